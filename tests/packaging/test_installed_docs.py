"""The documentation and deployment files a package install puts beside the command
(pyproject's data-files, docs/install.md): every document an installed one links to is installed
too, and every file the install lines of docs/install.md copy from /opt/ffrtmp/share is there."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/opt/ffrtmp"
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def data_files() -> dict[str, list[str]]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return pyproject["tool"]["setuptools"]["data-files"]


def installed_paths() -> dict[str, str]:
    """{installed path below the prefix: source path in the repository}"""
    return {
        f"{folder}/{PurePosixPath(source).name}": source
        for folder, sources in data_files().items()
        for source in sources
    }


def test_every_data_file_exists_in_the_source_tree() -> None:
    missing = [source for source in installed_paths().values() if not (REPO / source).is_file()]
    assert missing == []


def test_every_document_an_installed_document_links_to_is_installed_beside_it() -> None:
    installed = installed_paths()
    broken = []
    for target, source in installed.items():
        if not source.endswith(".md"):
            continue
        folder = PurePosixPath(target).parent
        for link in MARKDOWN_LINK.findall((REPO / source).read_text()):
            if "://" in link:
                continue
            # README.md links into docs/; installed, every document sits in one folder.
            linked = folder / PurePosixPath(link).name
            if str(linked) not in installed:
                broken.append(f"{source} -> {link}")
    assert broken == []


def test_the_files_the_install_lines_copy_are_installed_where_they_read_them() -> None:
    install_doc = (REPO / "docs" / "install.md").read_text()
    read_from = set(re.findall(rf"{re.escape(PREFIX)}/(share/[\w./-]+)", install_doc))
    read_from = {path.rstrip("/.") for path in read_from}
    files = {path for path in read_from if "." in PurePosixPath(path).name}
    assert "share/ffrtmp/ffrtmp-watch.service" in files
    assert "share/doc/ffrtmp/monitoring.md" in set(installed_paths()) | files
    assert files - set(installed_paths()) == set()


def test_the_units_documentation_is_installed_where_the_unit_names_it() -> None:
    unit = (REPO / "deploy" / "ffrtmp-watch.service").read_text()
    (line,) = [line for line in unit.splitlines() if line.startswith("Documentation=")]
    named = [url.removeprefix(f"file://{PREFIX}/") for url in line.split("=", 1)[1].split()]
    assert named and set(named) <= set(installed_paths())
