"""What the catalog and the content cache share about their SQL databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

_RACE = ("already exists", "duplicate key", "duplicate column")


def create_tables(metadata: MetaData, engine: Engine, tries: int = 3) -> None:
    """Create the missing tables. Processes that start together (a watcher and a worker on a new
    data dir) race to create them: the loser's CREATE fails with "already exists" (SQLite, and
    PostgreSQL's catalog) and it looks again, finding the tables made."""
    for attempt in range(1, tries + 1):
        try:
            metadata.create_all(engine)
            add_missing_columns(metadata, engine)
            return
        except SQLAlchemyError as exc:
            if attempt == tries or not any(s in str(exc).lower() for s in _RACE):
                raise


def add_missing_columns(metadata: MetaData, engine: Engine) -> None:
    """A data dir made by an earlier version lacks the columns added since: add them (each is
    nullable or has a default, so old rows read as before). ``create_all`` only makes tables."""
    found = inspect(engine)
    for table in metadata.sorted_tables:
        if not found.has_table(table.name):
            continue
        have = {c["name"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
                if column.index:
                    name = f"ix_{table.name}_{column.name}"
                    conn.execute(text(f'CREATE INDEX "{name}" ON {table.name} ("{column.name}")'))


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///...`` (WAL: readers such as ``status`` never block the writer,
    and parse processes write the content cache while the service reads) or ``postgresql://``."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
