"""Every `ffrtmp` command line the documentation shows still parses: README.md, docs/*.md, the
shipped unit's ExecStart and the `Example:` of every command's -h.

A runnable line is run for real against a scratch database (and a scratch config where it
names a config file that is not in the repository); it fails the test when click refuses it
as a usage error (exit 2 with "Try '... -h'" / "No such option" / "No such command"). Lines
that would govern processes for real or run forever get `--help` appended instead, which still
makes click parse every option given before it. A synopsis (`ffrtmp retries show ID [--json]`,
`ffrtmp db upgrade / current`), and a command only named in prose (`ffrtmp config check`), is
checked against the command's -h: the command exists and every flag it names is one of its
flags.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from ffrtmp_commands import FFRTMP

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
UNIT = REPO / "deploy" / "ffrtmp-watch.service"
# The deploy files' comments and descriptions name commands too (`ffrtmp retries list --state
# dead` in an alert, "Check a file with:   ffrtmp config check FILE" in a config's header).
DEPLOY = sorted(path for path in (REPO / "deploy").iterdir() if path.is_file())

# Commands that would govern real processes on this machine, or run until stopped: parsed
# with --help appended, never run.
GOVERN_OR_RUN_FOREVER = {"watch", "attach", "run", "release", "top"}
FOLLOW_FLAGS = {"-f", "--follow"}  # `events --follow` runs until Ctrl-C
# Commands that need the fleet's central PostgreSQL server (docs/fleet.md), which the scratch
# SQLite database is not: `fleet` and `ship` always, any other with --node (a central
# database's option). Parsed with --help appended, never run; tests/fleet/test_fleet_*.py run them.
CENTRAL_ONLY = {"fleet", "ship"}
CENTRAL_ONLY_FLAGS = {"--node"}

# Mistakes the docs show on purpose, with what ffrtmp answers: they must stay mistakes.
DELIBERATE_MISTAKES = {
    "ffrtmp retires": "Did you mean 'retries'?",
    "ffrtmp processes lsit": "Did you mean",
}

SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>&1"}
SYNOPSIS_MARKS = ("[", "|", "…", "...", "<")


def _code_lines(text: str) -> list[str]:
    """Shell lines of fenced blocks (``` or ```sh; ```text, ```json … hold output) and of
    indented blocks, continuation lines joined. Prose is not code: a sentence may begin with
    the word ffrtmp."""
    lines, joined, fence = [], "", None
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            fence = None if fence is not None else raw.lstrip()[3:].strip()
            continue
        in_shell_fence = fence in ("", "sh", "bash", "shell", "console")
        if not in_shell_fence and not (fence is None and raw.startswith("    ")):
            joined = ""
            continue
        line = raw.strip()
        if joined:
            line = joined + " " + line
            joined = ""
        if line.endswith("\\"):
            joined = line[:-1]
            continue
        lines.append(line)
    return lines


def _documented() -> list[tuple[str, str]]:
    """(where, command text) for every `ffrtmp ...` the docs show."""
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        text = doc.read_text()
        for span in re.findall(r"`(ffrtmp [^`]+)`", text):
            if span in DELIBERATE_MISTAKES:
                continue
            if re.fullmatch(r"ffrtmp( [a-z][a-z-]*)+", span):
                span += " [...]"  # a command named in prose: checked as a synopsis
            found.append((doc.name, span))
        for line in _code_lines(text):
            line = line.removeprefix("$ ")
            if re.match(r"^([A-Z_]+=\S+\s+)*ffrtmp\s", line):
                found.append((doc.name, line))
        for line in re.findall(r"ExecStart=\S*/(ffrtmp [^`|\n]+)", text):
            found.append((doc.name, line.strip()))
    for line in re.findall(r"^ExecStart=\S*/(ffrtmp .+)$", UNIT.read_text(), re.M):
        found.append((UNIT.name, line))
    for path in DEPLOY:
        text = path.read_text()
        for span in re.findall(r"`(ffrtmp [^`]+)`", text):
            if re.fullmatch(r"ffrtmp( [a-z][a-z-]*)+", span):
                span += " [...]"
            found.append((f"deploy/{path.name}", span))
        for line in re.findall(r"^#.*\S\s{2,}(ffrtmp [a-z].*)$", text, re.M):
            found.append((f"deploy/{path.name}", line.strip()))
    return list(dict.fromkeys(found))


def _help_examples() -> list[tuple[str, str]]:
    """The `Example:` lines of every command's -h (alternatives split on "or")."""
    import click

    from ffrtmp.cli import main

    found = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        for example in re.findall(r"Example: (.+)", command.help or ""):
            for alternative in re.split(r"\s{2,}or\s{2,}", example):
                found.append((f"-h of {' '.join(path) or 'ffrtmp'}", alternative.strip()))
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), (*path, name))

    walk(main, ())
    return found


def _is_synopsis(tokens: list[str]) -> bool:
    return any(
        any(mark in token for mark in SYNOPSIS_MARKS) or token == "/" or _is_placeholder(token)
        for token in tokens[1:]
    )


def _is_placeholder(token: str) -> bool:
    word = token.split("=", 1)[-1]
    return bool(re.fullmatch(r"[A-Z][A-Z_]*", word))


CASES = _documented() + _help_examples()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("docs")
    db = base / "ffrtmp.db"
    subprocess.run([*FFRTMP, "db", "upgrade", "--db", db], check=True, capture_output=True)
    config = base / "watch.yaml"
    config.write_text("target_commands: [ffrtmp-docs-test-matches-nothing]\n")
    return {"db": db, "config": config, "base": base}


def _split(command: str) -> tuple[dict[str, str], list[str]]:
    """Environment assignments and the tokens of the first command of a shell line."""
    tokens = shlex.split(command, comments=True)
    env = {}
    while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    for i, token in enumerate(tokens):
        if token in SHELL_OPERATORS:
            tokens = tokens[:i]
            break
    return env, tokens


def _scratch_tokens(tokens: list[str], scratch: dict[str, Path]) -> list[str]:
    out = []
    previous = ""
    for token in tokens:
        if previous == "--db" or token.endswith(".db"):
            token = str(scratch["db"])
        elif token.endswith((".yaml", ".yml")) and not (REPO / token).exists():
            token = str(scratch["config"])
        elif token.startswith("--db="):
            token = f"--db={scratch['db']}"
        out.append(token)
        previous = token
    return out


def _subcommand_paths(tokens: list[str]) -> list[list[str]]:
    """The command words of a synopsis; `a / b / c` alternatives give one path each."""
    words: list[str] = []
    for token in tokens[1:]:
        if token.startswith(("-", "[", '"', "'")) or _is_placeholder(token) or "…" in token:
            break
        words.append(token)
    if "/" not in words:
        return [words]
    head, alternatives = [], []
    for word in words:
        if word == "/":
            continue
        if alternatives or words[words.index(word) + 1 : words.index(word) + 2] == ["/"]:
            alternatives.append(word)
        else:
            head.append(word)
    return [head + [alternative] for alternative in alternatives]


def _usage_error(done: subprocess.CompletedProcess) -> bool:
    text = done.stderr
    return done.returncode == 2 and (
        "Try '" in text or "No such option" in text or "No such command" in text
    )


@pytest.mark.parametrize(("where", "command"), CASES, ids=[f"{w}: {c}" for w, c in CASES])
def test_a_documented_command_line_parses(where, command, scratch):
    env, tokens = _split(command)
    assert tokens and tokens[0] == "ffrtmp", f"{where}: {command!r} is no ffrtmp command"
    run_env = {**os.environ, "FFRTMP_DB": str(scratch["db"])}
    run_env.pop("FFRTMP_FAILPOINTS", None)
    if _is_synopsis(tokens):
        for path in _subcommand_paths(tokens):
            done = subprocess.run(
                [*FFRTMP, *path, "--help"], capture_output=True, text=True, env=run_env
            )
            assert done.returncode == 0, f"{where}: `ffrtmp {' '.join(path)}` {done.stderr}"
            flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", command))
            unknown = {flag for flag in flags if not re.search(rf"{flag}\b", done.stdout)}
            assert not unknown, f"{where}: {command!r}: `ffrtmp {' '.join(path)}` has no {unknown}"
        return
    argv = _scratch_tokens(tokens[1:], scratch)
    if argv and (
        argv[0] in GOVERN_OR_RUN_FOREVER
        or argv[0] in CENTRAL_ONLY
        or (FOLLOW_FLAGS | CENTRAL_ONLY_FLAGS) & set(argv)
    ):
        argv.append("--help")
    if "FFRTMP_DB" in env:
        env["FFRTMP_DB"] = str(scratch["db"])
    done = subprocess.run(
        [*FFRTMP, *argv],
        capture_output=True,
        text=True,
        env={**run_env, **{k: v for k, v in env.items() if k == "FFRTMP_DB"}},
        cwd=REPO,
        timeout=120,
    )
    assert not _usage_error(done), f"{where}: {command!r} is refused: {done.stderr}"
    assert "Traceback" not in done.stderr, f"{where}: {command!r}: {done.stderr}"


@pytest.mark.parametrize(("command", "answer"), DELIBERATE_MISTAKES.items())
def test_a_mistake_the_docs_show_is_refused_as_they_say(command, answer, scratch):
    assert any(command in doc.read_text() for doc in DOCS), f"no doc shows {command!r} any more"
    done = subprocess.run(
        [*FFRTMP, *command.split()[1:]], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 2 and answer in done.stderr, done.stderr


def test_the_docs_show_command_lines_at_all():
    """The extraction above must find what is there, or the test above proves nothing."""
    commands = {command for _, command in CASES}
    assert "ffrtmp health [...]" in commands
    assert any(c.startswith("ffrtmp watch --watch-config") for c in commands)
    assert any(c.startswith("ffrtmp retries requeue") for c in commands)
    deploy = {command for where, command in CASES if where.startswith("deploy/")}
    assert "ffrtmp config check /etc/ffrtmp/watch.yaml" in deploy
    assert "ffrtmp errors list --since 15m" in deploy
    assert len(CASES) > 40
