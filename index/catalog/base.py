"""The catalog's database: one engine and its sessions, shared by the catalog's parts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from index.catalog.tables import DocumentRow, now
from index.sql import make_engine, safe_url


class CatalogError(Exception):
    """The catalog database cannot be opened or used."""


class CatalogDamaged(CatalogError):
    """The catalog's file is not a database, or a damaged one (``shareindex rebuild``)."""


class SqlBase:
    """SQLAlchemy; SQLite in the data dir by default, PostgreSQL by URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = make_engine(url)
            from index.catalog.migrate import migrate

            migrate(self.engine, safe_url(url))
        except OperationalError as exc:
            raise CatalogError(f"cannot open the catalog at {safe_url(url)}: {exc.orig}") from exc
        except DatabaseError as exc:  # not a database, or a damaged one
            raise CatalogDamaged(
                f"the catalog at {safe_url(url)} is damaged ({exc.orig}): run 'shareindex "
                "rebuild' (it moves the file aside and rebuilds the catalog from the index and "
                "the shares, no vector lost), or put back a copy (catalog.db.before-*)"
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session


def after(seconds: float) -> datetime:
    return now() + timedelta(seconds=seconds)


def aware(at: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def row_of(session: Session, doc_id: str) -> DocumentRow:
    row = session.get(DocumentRow, doc_id)
    if row is None:
        raise KeyError(f"no document {doc_id} in the catalog")
    return row
