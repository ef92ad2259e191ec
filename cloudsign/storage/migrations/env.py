"""Alembic environment: runs on the connection the service hands over."""

from __future__ import annotations

from alembic import context

from cloudsign.storage.tables import all_tables

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("cloudsign migrations run through Database.migrate(), not the alembic CLI")
context.configure(
    connection=connection,
    target_metadata=all_tables(),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
