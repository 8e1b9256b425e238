"""Alembic's environment for the catalog: always run from ``index.catalog.migrate`` on the
connection it passes (never from a command line with a URL of its own)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
