"""ffrtmp as a user installs it: the wheel and the sdist built from this tree, each installed
into a fresh virtual environment outside the source tree, then used from there.

The editable install the rest of the suite runs on finds migrations/ and the docs beside the
source; an installed package has only its own files. Building goes through setuptools' PEP 517
hooks in the suite's own environment (no download of a build backend); installing fetches the
runtime dependencies through pip as a user's install would (pip's cache makes it quick).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2]
SOURCE_FILES = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]

pytestmark = pytest.mark.slow

# The migrations' env.py files run Alembic when imported, and __main__ runs the command line.
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, ffrtmp
skipped = ("ffrtmp.migrations", "ffrtmp.fleet_migrations")
names = [
    m.name for m in pkgutil.walk_packages(ffrtmp.__path__, "ffrtmp.")
    if not m.name.startswith(skipped) and not m.name.endswith(".__main__")
]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def copy_of_the_tree(target: Path) -> Path:
    """The files git knows (committed or not yet), without .venv or caches, so that what is
    built is what a clean checkout would build."""
    listed = subprocess.run(
        SOURCE_FILES, cwd=SOURCE, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in listed:
        source = SOURCE / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


def build(tree: Path, hook: str, out: Path) -> Path:
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tree = copy_of_the_tree(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("dist")
    return {"wheel": build(tree, "build_wheel", out), "sdist": build(tree, "build_sdist", out)}


def install(artifact: Path, where: Path) -> Path:
    """A fresh virtual environment with `artifact` installed; returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", str(artifact)]
    result = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return where / "bin"


def ffrtmp(bin_dir: Path, *args: str, cwd: Path, db: Path) -> subprocess.CompletedProcess:
    # Nothing of the source tree may leak in: no PYTHONPATH, a folder of its own as cwd.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["FFRTMP_DB"] = str(db)
    return subprocess.run(
        [str(bin_dir / "ffrtmp"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_wheel_holds_one_package_named_ffrtmp_with_its_migrations(artifacts) -> None:
    names = zipfile.ZipFile(artifacts["wheel"]).namelist()
    top_levels = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".data")}
    assert {name for name in top_levels if not name.endswith(".dist-info")} == {"ffrtmp"}
    assert "ffrtmp/migrations/env.py" in names
    assert any(name.startswith("ffrtmp/migrations/versions/0001_") for name in names)
    assert any(name.endswith(".data/data/share/doc/ffrtmp/monitoring.md") for name in names)
    # The fleet's own migration chain and role set-up (docs/fleet.md).
    assert "ffrtmp/fleet_migrations/env.py" in names
    assert any(name.startswith("ffrtmp/fleet_migrations/versions/c001_") for name in names)
    assert "ffrtmp/fleet/roles.sql" in names


def test_the_sdist_can_build_everything_the_wheel_has(artifacts) -> None:
    with tarfile.open(artifacts["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("migrations/env.py", "migrations/script.py.mako", "alembic.ini", "docs/cli.md"):
        assert needed in names
    for needed in ("fleet_migrations/env.py", "app/fleet/roles.sql", "docs/fleet.md"):
        assert needed in names


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_ffrtmp_creates_upgrades_and_reads_its_database(
    artifacts, kind: str, tmp_path: Path
) -> None:
    bin_dir = install(artifacts[kind], tmp_path / "venv")
    site = Path(
        subprocess.run(
            [
                str(bin_dir / "python"),
                "-c",
                "import ffrtmp, os; print(os.path.dirname(ffrtmp.__file__))",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        ).stdout.strip()
    )
    assert site.is_relative_to(tmp_path / "venv"), site
    assert not (site.parent / "app").exists(), "no generic top-level package may be installed"
    # Every module imports from the installed copy alone, without the fleet extra (psycopg): a
    # module that reached into the source tree (tests/, tools/) would fail here.
    imported = subprocess.run(
        [str(bin_dir / "python"), "-c", IMPORT_EVERY_MODULE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert int(imported.stdout) > 90, imported.stdout
    prefix = Path(
        subprocess.run(
            [str(bin_dir / "python"), "-c", "import sys; print(sys.prefix)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert (prefix / "share" / "doc" / "ffrtmp" / "monitoring.md").is_file()

    work = tmp_path / "elsewhere"
    work.mkdir()
    db = tmp_path / "state" / "ffrtmp.db"
    upgraded = ffrtmp(bin_dir, "db", "upgrade", cwd=work, db=db)
    assert upgraded.returncode == 0, upgraded.stderr
    assert db.is_file()

    # --target names a command nothing on this machine runs: one real scan, nothing governed.
    once = ffrtmp(
        bin_dir,
        "watch",
        "--once",
        "--target",
        "ffrtmp-install-check",
        "--discovery",
        "poll",
        cwd=work,
        db=db,
    )
    assert once.returncode == 0, once.stderr
    listed = ffrtmp(bin_dir, "retries", "list", "--json", cwd=work, db=db)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    checked = ffrtmp(bin_dir, "db", "check", cwd=work, db=db)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    scans = ffrtmp(bin_dir, "scans", "list", "--json", cwd=work, db=db)
    assert len(json.loads(scans.stdout)) == 1


def test_the_suite_runs_on_the_source_not_on_an_installed_copy() -> None:
    import ffrtmp

    assert Path(ffrtmp.__file__).resolve().parent == SOURCE / "app"
    assert sysconfig.get_paths()["purelib"] not in ffrtmp.__file__
