"""A private PostgreSQL 15 cluster for the fleet tests: Debian's real binaries, run as the
`postgres` user in a temporary directory, reached on a unix socket in that directory (trust, for
the fixtures' own set-up) and on 127.0.0.1 with a password (scram-sha-256, for what the tests
check), and stopped at the end of the session.

`.ci/run` installs the `postgresql` package where it is missing. Tests that need the server are
marked `fleet`; without the binaries they are skipped with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("FFRTMP_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER_PASSWORD = "fixture-superuser-" + uuid.uuid4().hex[:12]
START_TIMEOUT_S = 60


def unavailable_reason() -> str | None:
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 is missing ({PG_BIN}/initdb: apt-get install postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no `postgres` user to run the private cluster as"
    if os.geteuid() != 0:
        return "the private PostgreSQL cluster is started as the postgres user, which needs root"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'ffrtmp[fleet]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    root: Path
    port: int
    databases: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def _as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=check,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )

    @classmethod
    def create(cls) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="ffrtmp-pg-"))
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chmod(root, 0o755)  # the tests (root) reach the socket in here
        server = cls(root, _free_port())
        password_file = root / "superuser.pw"
        password_file.write_text(SUPERUSER_PASSWORD + "\n")
        os.chown(password_file, entry.pw_uid, entry.pw_gid)
        server._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(server.data),
            "-U",
            "postgres",
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        password_file.unlink()
        with open(server.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {server.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{server.socket_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\n"
            )
        server.start()
        return server

    def start(self) -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False
        )

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def admin_url(self, database: str = "postgres") -> str:
        """The superuser over the unix socket (trust): for the fixtures' own set-up."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def password_url(
        self, database: str, user: str = "postgres", password: str | None = None
    ) -> str:
        secret = SUPERUSER_PASSWORD if password is None else password
        return f"postgresql+psycopg://{user}:{secret}@127.0.0.1:{self.port}/{database}"

    def admin_sql(self, *statements: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
        ) as conn:
            for statement in statements:
                conn.execute(statement)

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.admin_sql(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return name
