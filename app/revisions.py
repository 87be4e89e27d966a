"""The schema revisions this code knows, read from migrations/versions without Alembic.

Read commands compare a database's `alembic_version` with head_revision() in plain SQL before
they query; importing Alembic to learn the head would cost them a third of their start-up.
Each revision file assigns `revision` and `down_revision` at its top (migrations/script.py.mako
writes them so), which is all it takes to find the head: the one revision no other follows.
A new migration therefore moves the head without a second edit anywhere, and
tests/store/test_migrations.py asserts that this reading agrees with Alembic's.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

# The migrations ship inside the package as ffrtmp.migrations (pyproject.toml maps the
# top-level migrations/ folder there), so an installed ffrtmp finds them in its own files.
MIGRATIONS = Path(importlib.util.find_spec("ffrtmp.migrations").submodule_search_locations[0])


class RevisionsError(Exception):
    """The migrations folder does not describe one line of revisions."""


def read_graph(versions: Path) -> dict[str, tuple[str, ...]]:
    """Each revision in `versions` with the revisions it follows (none for the first)."""
    graph: dict[str, tuple[str, ...]] = {}
    if not versions.is_dir():
        return graph
    for path in sorted(versions.iterdir()):
        if path.suffix != ".py":
            continue
        assigned = _top_level_assignments(path.read_text(), ("revision", "down_revision"))
        revision = assigned.get("revision")
        if not isinstance(revision, str):
            raise RevisionsError(f"{path} does not assign its revision id as a string")
        follows = assigned.get("down_revision")
        graph[revision] = (follows,) if isinstance(follows, str) else tuple(follows or ())
    return graph


def _top_level_assignments(source: str, names: tuple[str, ...]) -> dict[str, object]:
    """The literal values assigned to `names` at the start of a line (`name: type = value`)."""
    found: dict[str, object] = {}
    for line in source.splitlines():
        target, equals, value = line.partition("=")
        name = target.partition(":")[0].strip()
        if equals and name in names and name not in found and line.startswith(name):
            found[name] = ast.literal_eval(value.strip())
    return found


def find_head(graph: dict[str, tuple[str, ...]]) -> str:
    if not graph:
        raise RevisionsError(
            f"no migrations in {MIGRATIONS / 'versions'}: ffrtmp is installed without them"
        )
    followed = {parent for parents in graph.values() for parent in parents}
    heads = sorted(set(graph) - followed)
    if len(heads) != 1:
        raise RevisionsError(
            f"the migrations have {len(heads)} heads ({', '.join(heads) or 'none: a cycle'}); "
            "merge them into one (alembic merge)"
        )
    return heads[0]


@lru_cache(maxsize=1)
def _graph() -> dict[str, tuple[str, ...]]:
    return read_graph(MIGRATIONS / "versions")


def head_revision() -> str:
    """The revision this code's schema is at: the newest migration's."""
    return find_head(_graph())


def known_revisions() -> frozenset[str]:
    return frozenset(_graph())
