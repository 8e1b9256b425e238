"""The catalog's schema is versioned (Alembic, ``index/catalog/migrations``) and brought up to
date when a process opens it:

- a new database gets every migration;
- a catalog of a release before versioning (no ``alembic_version``) is brought to the baseline
  (``0001``: missing tables and columns added), stamped, then upgraded;
- a SQLite catalog that is about to change is first copied (``catalog.db.before-REV``, with
  SQLite's backup API: consistent even in WAL mode);
- a catalog whose schema is newer than this program knows is refused with one line that says so.

Processes that start together race: the loser's DDL fails with "already exists" and it looks
again, finding the schema made.
"""

from __future__ import annotations

import sqlite3
from importlib import import_module
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from index.catalog.base import CatalogError
from index.sql import add_missing_columns

_HERE = Path(__file__).parent / "migrations"
_RACE = ("already exists", "duplicate key", "duplicate column", "unique constraint")


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def head() -> str:
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, where: str, tries: int = 3) -> None:
    """Bring the catalog behind ``engine`` to the newest schema (see the module doc);
    ``where``: the catalog's address without secrets, for messages."""
    cfg = _config()
    script = ScriptDirectory.from_config(cfg)
    newest = head()
    known = {rev.revision for rev in script.walk_revisions()}
    for attempt in range(1, tries + 1):
        now = current(engine)
        if now == newest:
            return
        if now is not None and now not in known:
            raise CatalogError(
                f"the catalog at {where} has schema {now}, newer than this ShareIndex knows "
                f"(its newest is {newest}): upgrade ShareIndex, or point it at another catalog"
            )
        with engine.connect() as conn:
            unversioned = now is None and inspect(conn).has_table("documents")
        if now is not None or unversioned:
            _backup(engine, newest)
        try:
            if unversioned:  # a catalog of a release before versioning: to the baseline
                meta = import_module("index.catalog.migrations.versions.0001_baseline").baseline()
                meta.create_all(engine)
                add_missing_columns(meta, engine)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                if unversioned:
                    command.stamp(cfg, "0001")
                command.upgrade(cfg, "head")
            return
        except SQLAlchemyError as exc:
            if attempt == tries or not any(s in str(exc).lower() for s in _RACE):
                raise


def _backup(engine: Engine, newest: str) -> None:
    """A SQLite catalog about to be upgraded: a consistent copy beside it first."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return
    path = Path(engine.url.database)
    if not path.exists():
        return
    target = path.with_name(f"{path.name}.before-{newest}")
    src = sqlite3.connect(path)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # one self-contained file: the copy leaves WAL mode (no -wal/-shm beside it)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()
