"""The Alembic migrations, shipped inside the ffrtmp package (see pyproject.toml)."""
