"""Developer tool: write the next central revision once a local column was added to
app/schema.py (tests/fleet/test_fleet_schema.py fails until one exists).

    .venv/bin/python tools/new_fleet_revision.py c003 "processes.some_new_column"

It starts a private PostgreSQL cluster (tests/postgres_server.py: as root, with Debian's
postgresql package), brings an empty database to the current central head, and lets Alembic
write what differs from app/fleet/central_schema.py into fleet_migrations/versions/. Read the
file it writes before committing it.

A tool of the source tree, not of the package: it needs the tests' PostgreSQL helper and writes
into the checkout's fleet_migrations/, neither of which an installed ffrtmp has.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def main(rev_id: str, message: str) -> Path:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from ffrtmp.fleet import central

    sys.path.insert(0, str(REPOSITORY / "tests"))
    from postgres_server import PostgresServer

    server = PostgresServer.create()
    try:
        url = server.admin_url(server.new_database())
        central.upgrade(url)
        cfg = Config()
        cfg.set_main_option("script_location", str(central.FLEET_MIGRATIONS))
        engine = create_engine(url)
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        engine.dispose()
    finally:
        server.destroy()
    path = Path(script.path)
    text = path.read_text().replace("ffrtmp.utctime.UTCDateTime()", "UTCDateTime()")
    if "UTCDateTime()" in text:
        text = text.replace(
            "from alembic import op\n",
            "from alembic import op\n\nfrom ffrtmp.utctime import UTCDateTime\n",
        )
    text = re.sub(r"\s*# ### .* ###", "", text)
    path.write_text(text)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tools/new_fleet_revision.py REVISION_ID MESSAGE")
    print(main(sys.argv[1], sys.argv[2]))
