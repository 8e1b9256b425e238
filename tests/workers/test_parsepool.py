"""The parse pool contains what parsers do wrong: hangs, crashes, runaway memory."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.errors import ParserCrashed, ParseTimeout
from ingest.models import PreparedDocument, SourceFile
from ingest.stages.chunk import ChunkOptions
from ingest.stages.parse import ParseOptions
from workers.sync.parsepool import ParseJob, ParsePool


def _hang() -> None:
    time.sleep(60)


def _die() -> None:
    os._exit(9)


def _allocate() -> int:
    blob = bytearray(4 * 1024**3)  # over the 2 GB address-space limit below
    return len(blob)


@pytest.fixture(scope="module")
def pool(model_path: str) -> Iterator[ParsePool]:
    job = ParseJob(
        ParseOptions(),
        ChunkOptions(max_tokens=64),
        os.path.join(model_path, "tokenizer.json"),
        memory_mb=2048,
    )
    p = ParsePool(job, workers=1, timeout_s=3)
    yield p
    p.close()


def test_a_real_document_is_parsed_and_chunked(pool: ParsePool, share: Path) -> None:
    (share / "a.md").write_text("# Title\n\nThe pump seal is replaced every six months.\n")
    out = pool.outcome(pool.submit(SourceFile("s", str(share), "a.md", 0, 0)))
    assert isinstance(out, PreparedDocument)
    assert out.chunks[0].text == "Title\nThe pump seal is replaced every six months."


def test_a_hanging_parser_is_stopped_and_the_pool_goes_on(pool: ParsePool, share: Path) -> None:
    out = pool.outcome(pool._pool.schedule(_hang, timeout=pool.timeout_s))  # _hang: 60 s
    assert isinstance(out, ParseTimeout)
    assert "longer than the limit of 3 s" in str(out)
    test_a_real_document_is_parsed_and_chunked(pool, share)


def test_a_crashing_parser_is_recorded_and_replaced(pool: ParsePool, share: Path) -> None:
    out = pool.outcome(pool._pool.schedule(_die))
    assert isinstance(out, ParserCrashed)
    assert "died" in str(out)
    test_a_real_document_is_parsed_and_chunked(pool, share)


def test_runaway_memory_hits_the_limit_not_the_machine(pool: ParsePool) -> None:
    out = pool.outcome(pool._pool.schedule(_allocate))
    assert isinstance(out, ParserCrashed)
    assert "memory" in str(out)
