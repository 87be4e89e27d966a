"""Alembic environment: the app passes its connection in; the alembic command line resolves
the database the same way the app does (-x db=..., else FFRTMP_DB, else the default path)."""

from alembic import context

from ffrtmp import database
from ffrtmp.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        transaction_per_migration=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
elif context.is_offline_mode():
    context.configure(
        url=database.resolve(context.get_x_argument(as_dictionary=True).get("db")).url,
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    location = database.resolve(context.get_x_argument(as_dictionary=True).get("db"))
    engine = database.make_engine(location)
    with engine.connect() as conn:
        run_migrations(conn)
    engine.dispose()
