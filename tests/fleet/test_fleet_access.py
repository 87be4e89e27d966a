"""Credentials and access on the central database: a node's role writes only its own rows
(app/fleet/roles.sql, row-level security), and a password never shows in what ffrtmp prints."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from fleet_helpers import assert_same_rows, make_history, node_id_of
from sqlalchemy.engine import make_url

import ffrtmp.fleet
from ffrtmp.cli import main
from ffrtmp.database import open_for_writing
from ffrtmp.fleet import central
from ffrtmp.store import Store

pytestmark = pytest.mark.fleet

ROLES_SQL = Path(ffrtmp.fleet.__file__).with_name("roles.sql").read_text()


def node_with_history(path: Path, count: int) -> None:
    store = Store(open_for_writing(path))
    try:
        make_history(store, count)
    finally:
        store.close()


def ship(path, url, label):
    return CliRunner().invoke(
        main,
        ["ship", "--once", "--db", str(path), "--node-label", label],
        env={"FFRTMP_SHIP_TO": url},
    )


def test_a_nodes_role_cannot_change_another_nodes_rows(tmp_path, central_db, postgres_server):
    central.upgrade(central_db)
    database = make_url(central_db).database
    postgres_server.admin_sql(ROLES_SQL, database=database)
    postgres_server.admin_sql(
        "DROP ROLE IF EXISTS edge_a",
        "DROP ROLE IF EXISTS edge_b",
        "CREATE ROLE edge_a LOGIN PASSWORD 'pw-a' IN ROLE ffrtmp_node",
        "CREATE ROLE edge_b LOGIN PASSWORD 'pw-b' IN ROLE ffrtmp_node",
        database=database,
    )
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    node_with_history(a, 20)
    node_with_history(b, 20)
    url_a = postgres_server.password_url(database, "edge_a", "pw-a")
    url_b = postgres_server.password_url(database, "edge_b", "pw-b")
    assert ship(a, url_a, "edge-a").exit_code == 0
    assert ship(b, url_b, "edge-b").exit_code == 0
    node_b = node_id_of(b)
    with psycopg.connect(
        host="127.0.0.1",
        port=postgres_server.port,
        dbname=database,
        user="edge_a",
        password="pw-a",
        autocommit=True,
    ) as conn:
        changed = conn.execute(
            "UPDATE processes SET command = 'forged' WHERE node_id = %s", (node_b,)
        ).rowcount
        assert changed == 0  # B's rows are not even visible to A
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM processes WHERE node_id = %s", (node_b,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # row-level security
            conn.execute(
                "INSERT INTO scans (node_id, id, started_at, duration_ms, trigger, ok, seen, "
                "matched, new, unreadable, errors) VALUES (%s, 999, now(), 1, 'x', true, 0, 0, "
                "0, 0, 0)",
                (node_b,),
            )
        taken = conn.execute(
            "UPDATE fleet_nodes SET owner = 'edge_a' WHERE node_id = %s", (node_b,)
        ).rowcount
        assert taken == 0  # nor can A take B's node over
    # B's history is exactly what B shipped; A's role reaches its own rows.
    assert_same_rows(b, central_db)
    assert_same_rows(a, central_db)
    # B's node id shipped with A's credentials is refused: A cannot write as B.
    os.environ.pop("PGPASSWORD", None)
    forged = ship(b, url_a, "edge-b")
    assert forged.exit_code == 1
    assert "row-level security" in forged.output
    assert "pw-a" not in forged.output


def test_a_wrong_password_is_one_sentence_without_the_password(
    tmp_path, central_db, postgres_server
):
    central.upgrade(central_db)
    path = tmp_path / "n.db"
    node_with_history(path, 3)
    url = postgres_server.password_url(make_url(central_db).database, "postgres", "not-the-pw")
    result = ship(path, url, "edge-x")
    assert result.exit_code == 1
    assert "password authentication failed" in result.output
    assert "not-the-pw" not in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_libpq_password_file_is_used(tmp_path, central_db, postgres_server):
    central.upgrade(central_db)
    path = tmp_path / "n.db"
    node_with_history(path, 3)
    passfile = tmp_path / "pgpass"
    from postgres_server import SUPERUSER_PASSWORD

    passfile.write_text(f"127.0.0.1:{postgres_server.port}:*:postgres:{SUPERUSER_PASSWORD}\n")
    passfile.chmod(0o600)
    database = make_url(central_db).database
    url = (
        f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/{database}"
        f"?passfile={passfile}&sslmode=disable"
    )
    # On the command line too: no password in it, so nothing for `ps` to show.
    result = CliRunner().invoke(main, ["ship", "--once", "--db", str(path), "--to", url])
    assert result.exit_code == 0, result.output
    assert_same_rows(path, central_db)


def test_tls_settings_reach_libpq(tmp_path, central_db, postgres_server):
    """The private server has no TLS: `sslmode=require` in the URL must make libpq refuse it,
    which shows the setting went through to libpq."""
    central.upgrade(central_db)
    path = tmp_path / "n.db"
    node_with_history(path, 1)
    database = make_url(central_db).database
    url = postgres_server.password_url(database) + "?sslmode=require"
    result = ship(path, url, "edge-tls")
    assert result.exit_code == 1
    assert "server does not support SSL" in result.output
