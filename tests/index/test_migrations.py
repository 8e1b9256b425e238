"""Catalog schema migrations (issue 20, part 4): the schema is versioned with Alembic; a catalog
made by the release before versioning upgrades in place at start (SQLite: a backup copy
first), on PostgreSQL too; a catalog newer than the program is refused with a clear message.

``tests/data/catalog-0.1.sqlite`` was made by the code of commit 6a07616 (the last release
before versioning): five documents (three indexed, one failed, one deleted), a pending member of
a message, their version history and a freshness sample."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from importlib import import_module
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from index.catalog import CatalogError, SqlCatalog
from index.catalog.migrate import current, head
from index.sql import make_engine
from tests.conftest import fresh_database

OLD = Path(__file__).parent.parent / "data" / "catalog-0.1.sqlite"


def _tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_catalog_of_the_previous_release_upgrades_in_place_with_a_backup(
    tmp_path: Path,
) -> None:
    path = tmp_path / "catalog.db"
    shutil.copy(OLD, path)
    assert "alembic_version" not in _tables(path)
    catalog = SqlCatalog(f"sqlite:///{path}")
    try:
        assert catalog.counts() == {"pending": 1, "indexed": 3, "failed": 1, "skipped": 0,
                                    "deleted": 1}  # fmt: skip
        doc = catalog.get("doc-2")
        assert doc is not None and (doc.version, doc.content_hash, doc.chunk_count) == (
            1,
            "hash2",
            3,
        )
        assert len(catalog.versions("doc-2")) == 1
        assert catalog.get("doc-m").parent_id == "doc-0"  # type: ignore[union-attr]
        assert catalog.get("doc-4").error == "password-protected PDF"  # type: ignore[union-attr]
        assert catalog.freshness()["samples"] == 1
        # what the new schema adds works on the old rows
        catalog.share_passed("docs", "1:2")
        assert catalog.share_state("docs").root == "1:2"  # type: ignore[union-attr]
        assert catalog.kept_twin("hash1") is None
    finally:
        catalog.close()
    assert current(make_engine(f"sqlite:///{path}")) == head()
    backup = tmp_path / f"catalog.db.before-{head()}"
    assert backup.exists() and "alembic_version" not in _tables(backup)
    assert "documents" in _tables(backup)
    SqlCatalog(f"sqlite:///{path}").close()  # up to date: opened as it is, no new copy
    assert sorted(p.name for p in tmp_path.iterdir() if ".before-" in p.name) == [backup.name]


def test_a_catalog_newer_than_the_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    SqlCatalog(f"sqlite:///{path}").close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(CatalogError, match="schema 9999, newer than this ShareIndex knows"):
        SqlCatalog(f"sqlite:///{path}")


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A database of its own (the session's is shared with the catalog's contract tests)."""
    yield from fresh_database("shareindex_mig")


def test_an_unversioned_postgresql_catalog_upgrades(fresh_postgres: str) -> None:
    postgres_url = fresh_postgres
    engine = make_engine(postgres_url)
    baseline = import_module("index.catalog.migrations.versions.0001_baseline").baseline()
    baseline.create_all(engine)  # what the release before versioning made
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO documents (id, share, path, size, mtime_ns, version, next_version, "
            "status, chunk_count, acl, acl_deny, attempts, unfinished) VALUES "
            "('d1', 'docs', 'a.txt', 1, 1, 1, 1, 'indexed', 2, '[\"everyone\"]', '[]', 0, 0)"
        ))  # fmt: skip
    engine.dispose()
    catalog = SqlCatalog(postgres_url)
    try:
        assert catalog.get("d1").chunk_count == 2  # type: ignore[union-attr]
        catalog.mark_deleted(["d1"], kept_until=None)
        assert catalog.held_deletions() == {}
    finally:
        catalog.close()
    assert current(make_engine(postgres_url)) == head()
