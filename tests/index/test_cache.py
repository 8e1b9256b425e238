"""The content cache contract, run against every implementation: in memory, SQLite, PostgreSQL."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from index.cache import SqlContentCache
from ingest.cache import ContentCache, MemoryCache, content_key


def _write_in_child(cache: SqlContentCache, key: str, value: str) -> None:
    cache.put(key, value)


class ContentCacheContract:
    """Mixin: a subclass provides the ``cache`` fixture."""

    def test_a_missing_key_is_a_miss(self, cache: ContentCache) -> None:
        assert cache.get(content_key("ocr", b"never seen", "m", "1")) is None

    def test_a_value_comes_back_exactly(self, cache: ContentCache) -> None:
        key = content_key("caption", b"\x89PNG image bytes", "qwen2-vl", "v1")
        value = "棒グラフ: 月別の生産量。\nA bar chart of monthly output, 4 bars."
        cache.put(key, value)
        assert cache.get(key) == value

    def test_the_first_answer_stays(self, cache: ContentCache) -> None:
        key = content_key("ocr", b"page", "tesseract", "1")
        cache.put(key, "first")
        cache.put(key, "second")  # a concurrent reader of the same page: no error
        assert cache.get(key) == "first"

    def test_an_empty_answer_is_a_hit(self, cache: ContentCache) -> None:
        key = content_key("ocr", b"blank page", "tesseract", "1")
        cache.put(key, "")
        assert cache.get(key) == ""


class TestMemoryCache(ContentCacheContract):
    @pytest.fixture
    def cache(self) -> MemoryCache:
        return MemoryCache()


class SqlContract(ContentCacheContract):
    def test_rows_record_their_kind(self, cache: SqlContentCache) -> None:
        cache.put(content_key("ocr", b"a", "t", "1"), "x")
        cache.put(content_key("caption", b"a", "m", "1"), "y")
        assert cache.count("ocr") >= 1
        assert cache.count("caption") >= 1

    def test_it_pickles_as_its_url_and_reconnects(self, cache: SqlContentCache) -> None:
        key = content_key("ocr", b"pickled", "t", "1")
        cache.put(key, "kept")
        clone = pickle.loads(pickle.dumps(cache))
        assert clone.url == cache.url
        assert clone.get(key) == "kept"
        clone.close()

    def test_a_parse_process_writes_what_the_service_reads(self, cache: SqlContentCache) -> None:
        key = content_key("ocr", b"from a child process", "t", "1")
        child = multiprocessing.get_context("spawn").Process(
            target=_write_in_child, args=(cache, key, "written by the child")
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert cache.get(key) == "written by the child"


class TestSqliteCache(SqlContract):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> Iterator[SqlContentCache]:
        c = SqlContentCache(f"sqlite:///{tmp_path / 'catalog.db'}")
        yield c
        c.close()


class TestPostgresCache(SqlContract):
    @pytest.fixture
    def cache(self, postgres_url: str) -> Iterator[SqlContentCache]:
        c = SqlContentCache(postgres_url)
        yield c
        c.close()


def test_an_engine_can_be_shared(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    cache = SqlContentCache(engine)
    cache.put("ocr:abc", "text")
    cache.close()  # the engine belongs to its owner: still usable
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT value FROM content_cache").scalar() == "text"
    assert SqlContentCache(f"sqlite:///{tmp_path / 'shared.db'}").get("ocr:abc") == "text"


def test_an_unreachable_database_is_a_miss_not_an_error(tmp_path: Path) -> None:
    cache = SqlContentCache(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'c.db'}")
    assert cache.get("ocr:abc") is None
    cache.put("ocr:abc", "lost, and that is fine")


def test_keys_change_with_each_part() -> None:
    base = content_key("ocr", b"img", "model", "1")
    assert base.startswith("ocr:")
    assert len({
        base,
        content_key("caption", b"img", "model", "1"),
        content_key("ocr", b"img2", "model", "1"),
        content_key("ocr", b"img", "model2", "1"),
        content_key("ocr", b"img", "model", "2"),
    }) == 5  # fmt: skip
