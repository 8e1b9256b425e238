"""The shared content cache: OCR text and VLM answers by image hash, in the catalog's database.

One table, ``content_cache`` (key, kind, value, created_at), on SQLite or PostgreSQL. The cache is
opened by URL and pickles as its URL, so a parse process (or a worker on another machine)
reconnects to the same store. It is an optimisation: a database error is logged and reads as a
miss, never as a failed document.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String, Text, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from index.sql import create_tables, make_engine
from ingest.cache import key_kind

log = logging.getLogger(__name__)


class _Base(DeclarativeBase):
    pass


class ContentCacheRow(_Base):
    __tablename__ = "content_cache"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SqlContentCache:
    """``ingest.cache.ContentCache`` on SQLAlchemy; thread-safe; connects on first use.

    Takes a URL (``sqlite:///...``, ``postgresql://...``) or an open Engine (shared with the
    catalog, for example); either way it pickles as the URL.
    """

    def __init__(self, target: str | Engine) -> None:
        if isinstance(target, Engine):
            self.url = target.url.render_as_string(hide_password=False)
            self._engine: Engine | None = target
            self._owned = False
            create_tables(_Base.metadata, target)
        else:
            self.url = target
            self._engine = None
            self._owned = True
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])  # type: ignore[misc]

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = make_engine(self.url)
                create_tables(_Base.metadata, engine)
                self._engine, self._owned = engine, True
            return self._engine

    def get(self, key: str) -> str | None:
        try:
            with Session(self.engine()) as session:
                return session.scalar(
                    select(ContentCacheRow.value).where(ContentCacheRow.key == key)
                )
        except SQLAlchemyError as exc:
            log.warning("content cache unavailable (read as a miss): %s", exc)
            return None

    def put(self, key: str, value: str) -> None:
        row = {"key": key, "kind": key_kind(key), "value": value, "created_at": datetime.now(UTC)}
        try:
            engine = self.engine()
            dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
            # two processes may read the same image at once: the first answer stays
            statement = dialect.insert(ContentCacheRow).values(row).on_conflict_do_nothing()
            with engine.begin() as conn:
                conn.execute(statement)
        except SQLAlchemyError as exc:
            log.warning("content cache unavailable (result not kept): %s", exc)

    def count(self, kind: str | None = None) -> int:
        query = select(func.count()).select_from(ContentCacheRow)
        if kind is not None:
            query = query.where(ContentCacheRow.kind == kind)
        with Session(self.engine()) as session:
            return int(session.scalar(query) or 0)

    def close(self) -> None:
        """Dispose of the engine this cache created; one it was given belongs to its owner."""
        with self._lock:
            if self._engine is not None and self._owned:
                self._engine.dispose()
            self._engine = None
