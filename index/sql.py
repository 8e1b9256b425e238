"""What the catalog and the content cache share about their SQL databases."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

_RACE = ("already exists", "duplicate key")


def create_tables(metadata: MetaData, engine: Engine, tries: int = 3) -> None:
    """Create the missing tables. Processes that start together (a watcher and a worker on a new
    data dir) race to create them: the loser's CREATE fails with "already exists" (SQLite, and
    PostgreSQL's catalog) and it looks again, finding the tables made."""
    for attempt in range(1, tries + 1):
        try:
            metadata.create_all(engine)
            return
        except SQLAlchemyError as exc:
            if attempt == tries or not any(s in str(exc).lower() for s in _RACE):
                raise
