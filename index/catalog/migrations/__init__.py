"""Alembic migrations of the catalog's schema (run at start by ``index.catalog.migrate``)."""
