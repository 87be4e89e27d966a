"""Alembic environment of the central (fleet) database: ffrtmp passes its connection in."""

from alembic import context

from ffrtmp.fleet.central_schema import metadata

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    transaction_per_migration=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
