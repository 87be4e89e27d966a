"""The package's layers, read statically from the source (ast, nothing imported): the library
never reaches up into the command line, no command module imports another, and no modules
import each other in a circle, whether at the top of a module or inside a function (an import
inside a function is still a dependency; it is only paid later).

An import under `if TYPE_CHECKING:` is for the type checker and never runs: it is left out of
the circles but still counts for the library's layer rule (click must not leak into it even as
a type).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "app"
PACKAGE = "ffrtmp"  # the installed name of app/ (pyproject.toml, [tool.setuptools.package-dir])
CLI = f"{PACKAGE}.cli"


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the package, or the top-level name of anything else
    line: int
    at_top: bool  # at module level, not inside a function
    runs: bool  # False under `if TYPE_CHECKING:`


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, known: set[str]) -> str:
    """The package's module `name` denotes (the longest known prefix), or the top-level name
    of a module from elsewhere."""
    if not name.startswith(PACKAGE + ".") and name != PACKAGE:
        return name.split(".")[0]
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [_resolve(alias.name, known) for alias in node.names]
        if node.level:
            base = module.split(".")
            base = base if is_package else base[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, *filter(None, [node.module])])
        else:
            source = node.module or ""
        # `from ffrtmp.cli import on_central` imports the module ffrtmp.cli.on_central.
        return [
            _resolve(f"{source}.{alias.name}", known)
            if f"{source}.{alias.name}" in known
            else _resolve(source, known)
            for alias in node.names
        ]

    def visit(node: ast.AST, at_top: bool, runs: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in targets(node):
                found.append(Import(module, target, node.lineno, at_top, runs))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, at_top, False)
            for child in node.orelse:
                visit(child, at_top, runs)
            return
        inner = at_top and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner, runs)

    visit(tree, True, True)
    return found


def all_imports() -> list[Import]:
    modules = package_modules()
    known = set(modules)
    return [found for name, path in modules.items() for found in imports_of(name, path, known)]


def lazy_subcommands() -> dict[str, str]:
    """The command modules ffrtmp.cli loads by name (its SUBCOMMANDS table), read from the
    source like the rest."""
    tree = ast.parse((SOURCE / "cli" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "SUBCOMMANDS" for t in node.targets
        ):
            table = ast.literal_eval(node.value)
            return {name: target.split(":")[0] for name, target in table.items()}
    raise AssertionError("ffrtmp.cli has no SUBCOMMANDS table")


def dependency_graph(imports: list[Import]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports when it runs (at the top or in a function),
    including the command modules the CLI's group loads by name."""
    known = set(package_modules())
    graph: dict[str, set[str]] = {name: set() for name in known}
    for found in imports:
        if found.runs and found.target in known and found.target != found.importer:
            graph[found.importer].add(found.target)
    graph[CLI].update(lazy_subcommands().values())
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for node in sorted(graph):
            if node not in index:
                connect(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def one_circle(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    """A closed path through the component from its first module, for the failure message."""
    start, inside = members[0], set(members)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for successor in sorted(graph[node] & inside):
            if successor == start:
                return [*paths[node], start]
            if successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    return members


def test_the_walk_sees_the_whole_package() -> None:
    """The checks below can only be as good as the walk: it finds every module and the imports
    known to be there."""
    modules = package_modules()
    assert {f"{PACKAGE}.cli", f"{PACKAGE}.cli.connect", f"{PACKAGE}.daemon"} <= set(modules)
    assert f"{PACKAGE}.cgroups.v2" in modules
    edges = {(i.importer, i.target, i.at_top) for i in all_imports()}
    assert (f"{PACKAGE}.cli.health", f"{PACKAGE}.cli.connect", True) in edges
    assert (f"{PACKAGE}.cli.health", f"{PACKAGE}.stored_health", False) in edges
    assert (f"{PACKAGE}.cli.connect", "sqlalchemy", False) in edges
    assert set(lazy_subcommands().values()) <= set(modules)


def test_the_finder_finds_a_circle_through_a_function_level_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert one_circle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_modules_of_the_package_import_each_other_in_a_circle() -> None:
    graph = dependency_graph(all_imports())
    found = [
        f"{', '.join(members)} (e.g. {' -> '.join(one_circle(graph, members))})"
        for members in circles(graph)
    ]
    assert not found, "import circles: " + "; ".join(found)


def test_the_library_never_imports_the_command_line_or_click() -> None:
    offending = [
        f"{i.importer} imports {i.target} (line {i.line})"
        for i in all_imports()
        if not (i.importer == CLI or i.importer.startswith(CLI + "."))
        and (i.target == "click" or i.target == CLI or i.target.startswith(CLI + "."))
    ]
    assert not offending, offending


def test_no_command_module_imports_another() -> None:
    """What two commands share lives in a shared CLI module (options, connect, governed, ...)
    or in the library, so that loading one command never loads another's."""
    commands = set(lazy_subcommands().values())
    offending = [
        f"{i.importer} imports {i.target} (line {i.line})"
        for i in all_imports()
        if i.importer in commands and i.target in commands and i.target != i.importer
    ]
    assert not offending, offending


def test_no_module_reaches_outside_the_installed_package_through_sys_path() -> None:
    """An installed wheel has only the package: a module that puts a folder of the source tree
    (tests/, tools/) on sys.path works in a checkout and breaks once installed."""
    offending = [
        f"{module} (line {node.lineno})"
        for module, path in package_modules().items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]
    assert not offending, f"sys.path used in {offending}"


def test_the_central_revision_writer_runs_from_the_checkout() -> None:
    """tools/new_fleet_revision.py, out of the package, still finds what it uses there: the
    tests' PostgreSQL helper and the package (run without arguments it only says its usage)."""
    import runpy
    import subprocess

    tool = SOURCE.parent / "tools" / "new_fleet_revision.py"
    found = runpy.run_path(str(tool))
    assert (found["REPOSITORY"] / "tests" / "postgres_server.py").is_file()
    result = subprocess.run([sys.executable, str(tool)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "usage: python tools/new_fleet_revision.py REVISION_ID MESSAGE" in result.stderr
