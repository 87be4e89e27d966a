"""The schema revision this code expects, known without importing Alembic.

Read commands compare a database's `alembic_version` with HEAD_REVISION in plain SQL, so they
start fast; tests/test_migrations.py asserts HEAD_REVISION is Alembic's head.
"""

HEAD_REVISION = "0001"
