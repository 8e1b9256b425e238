"""Invariants 1, 2 and 6 at the level of the indexer: idempotent, ordered, no redundant work."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from index.catalog import PENDING
from index.permissions.readers import Access
from workers.runtime import Runtime, open_runtime
from workers.settings import load_settings
from workers.sync.indexer import Indexer
from workers.sync.work import WorkItem

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    base = tmp_path_factory.mktemp("ordering")
    (base / "share").mkdir()
    rt = open_runtime(load_settings(data_dir=base / "data", shares={"s": base / "share"}))
    yield rt
    rt.close()


@pytest.fixture
def root(runtime: Runtime) -> str:
    return str(runtime.settings.shares["s"])


def _texts(runtime: Runtime, doc_id: str) -> list[tuple[int, str]]:
    return sorted(
        (p.payload["metadata"]["version"], p.payload["page_content"])
        for p in runtime.store.document_points(doc_id)
    )


def _work(indexer: Indexer, path: str) -> WorkItem:
    record = indexer.planner.catalog.find("s", path)
    assert record is not None
    source = indexer.source("s")
    entry = source.stat(path)
    assert entry is not None
    access = Access(frozenset(record.acl), frozenset(record.acl_deny))
    return WorkItem(source, entry, record.id, access, None, record, "changed", time.time())


def _prepare(runtime: Runtime, item: WorkItem) -> Any:
    return runtime.pool.outcome(runtime.pool.submit(item.file))


def _edit(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a distinct mtime even on coarse clocks


def test_an_older_result_finishing_last_is_discarded(runtime: Runtime, root: str) -> None:
    indexer = runtime.indexer
    path = Path(root) / "order.txt"
    path.write_text("Version one of the mixer manual.\n")
    indexer.sync_paths("s", {"order.txt": time.time()})
    doc_id = runtime.catalog.find("s", "order.txt").id  # type: ignore[union-attr]

    _edit(path, "Version two of the mixer manual.\n")
    older = _work(indexer, "order.txt")
    older_doc = _prepare(runtime, older)  # read "two"
    _edit(path, "Version three of the mixer manual.\n")
    newer = _work(indexer, "order.txt")
    newer_doc = _prepare(runtime, newer)  # read "three"

    report = indexer.sync_paths("s", {})  # nothing; then commit the newer result first ...
    runtime.processor.commit_many([(newer, newer_doc)], report)
    runtime.processor.commit_many([(older, older_doc)], report)  # ... and the older one last
    assert report.superseded == 1
    assert [t for _, t in _texts(runtime, doc_id)] == ["Version three of the mixer manual."]
    assert runtime.catalog.get(doc_id).version == max(v for v, _ in _texts(runtime, doc_id))  # type: ignore[union-attr]


def test_compare_and_set_drops_a_lower_version_that_commits_last(
    runtime: Runtime, root: str, monkeypatch
) -> None:
    """Two writers of the same bytes: the one holding the lower version number loses, even when
    the file did not change under it, and its points are removed."""
    indexer = runtime.indexer
    path = Path(root) / "cas.txt"
    path.write_text("First text of the boiler checklist.\n")
    indexer.sync_paths("s", {"cas.txt": time.time()})
    doc_id = runtime.catalog.find("s", "cas.txt").id  # type: ignore[union-attr]
    _edit(path, "Second text of the boiler checklist.\n")
    first, second = _work(indexer, "cas.txt"), _work(indexer, "cas.txt")
    doc_a, doc_b = _prepare(runtime, first), _prepare(runtime, second)

    # writer A reads the catalog, takes a version number and stalls; B takes the next one and
    # commits; then A commits with its lower number and what it read before B's commit
    seen_by_a = runtime.catalog.get(doc_id)
    v_a = runtime.catalog.allocate_version(doc_id, "hash of what A read")
    report = indexer.sync_paths("s", {})
    runtime.processor.commit_many([(second, doc_b)], report)
    monkeypatch.setattr(runtime.catalog, "allocate_version", lambda d, h: v_a)
    monkeypatch.setattr(runtime.catalog, "get", lambda d: seen_by_a)
    runtime.processor.commit_many([(first, doc_a)], report)
    monkeypatch.undo()
    assert report.superseded == 1
    versions = {v for v, _ in _texts(runtime, doc_id)}
    assert versions == {v_a + 1}  # only the winner's points
    assert runtime.catalog.get(doc_id).version == v_a + 1  # type: ignore[union-attr]


def test_processing_twice_leaves_the_index_as_once(runtime: Runtime, root: str) -> None:
    indexer = runtime.indexer
    (Path(root) / "twice.txt").write_text("Idempotence check for the hopper manual.\n")
    indexer.sync_paths("s", {"twice.txt": time.time()})
    doc_id = runtime.catalog.find("s", "twice.txt").id  # type: ignore[union-attr]
    points = sorted(
        (str(p.id), p.payload["page_content"]) for p in runtime.store.document_points(doc_id)
    )
    # the same bytes again, as a redelivered task or a crash-and-redo would
    item = _work(indexer, "twice.txt")
    runtime.catalog.upsert_seen(
        item.doc_id,
        "s",
        "twice.txt",
        item.entry.size,
        item.entry.mtime_ns,
        sorted(item.access.allow),
    )
    assert runtime.catalog.get(doc_id).status == PENDING  # type: ignore[union-attr]
    report = indexer.sync_share("s")
    assert report.changed == 1 and report.embedded == 0  # rewritten from stored vectors
    again = sorted(
        (str(p.id), p.payload["page_content"]) for p in runtime.store.document_points(doc_id)
    )
    assert again == points
    assert runtime.catalog.get(doc_id).version == 1  # type: ignore[union-attr]


def test_unchanged_files_are_not_hashed_and_touched_files_not_parsed(
    runtime: Runtime, root: str, monkeypatch
) -> None:
    indexer = runtime.indexer
    for i in range(5):
        (Path(root) / f"same{i}.txt").write_text(f"Unchanged document {i}.\n")
    indexer.sync_share("s")
    hashed: list[str] = []
    parsed: list[str] = []
    real_hash, real_submit = indexer.planner.hash, runtime.pool.submit
    monkeypatch.setattr(
        indexer.planner, "hash", lambda src, e: hashed.append(e.path) or real_hash(src, e)
    )
    monkeypatch.setattr(
        runtime.pool, "submit", lambda src: parsed.append(src.path) or real_submit(src)
    )

    report = indexer.sync_share("s")
    assert (hashed, parsed, report.embedded) == ([], [], 0)

    os.utime(Path(root) / "same3.txt")  # touch: the mtime moves, the bytes do not
    report = indexer.sync_share("s")
    assert hashed == ["same3.txt"] and parsed == [] and report.embedded == 0
    assert report.unchanged >= 5


def test_a_writer_that_died_after_taking_a_version_leaves_no_gap(
    runtime: Runtime, root: str
) -> None:
    """Killed between taking a version number and claiming it: the redo of the same bytes takes
    the same number, so it writes the same point ids (and a reader sees version 1, not 2)."""
    indexer = runtime.indexer
    path = Path(root) / "died.txt"
    path.write_text("Written by a worker that died mid-commit.\n")
    runtime.catalog.upsert_seen(
        "died-doc", "s", "died.txt", 0, 0, ["everyone"]
    )  # seen, as before the crash
    import hashlib

    runtime.catalog.allocate_version("died-doc", hashlib.sha256(path.read_bytes()).hexdigest())
    report = indexer.sync_share("s")
    assert report.superseded == 0
    record = runtime.catalog.find("s", "died.txt")
    assert record is not None and record.id == "died-doc" and record.version == 1
    assert {
        p.payload["metadata"]["version"] for p in runtime.store.document_points("died-doc")
    } == {1}


def test_the_model_runs_beside_parsing_and_writing_and_each_chunk_keeps_its_vector(
    runtime: Runtime, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync embeds one batch on the model's thread while this thread collects the next
    documents from the parse processes and writes the batch before; batches in flight never mix
    up their vectors."""
    import threading

    import numpy as np

    folder = Path(root) / "batches"
    folder.mkdir()
    topics = ["boiler", "conveyor", "forklift", "invoice", "kiln", "lathe", "mixer", "pallet",
              "pump", "sensor", "valve", "welding"]  # fmt: skip
    for n, topic in enumerate(topics):
        (folder / f"{n:02d}-{topic}.txt").write_text(
            f"The {topic} inspection checklist, section {n}.\n\n"
            f"Who signs off the {topic} repair when the shift ends early.\n"
        )
    monkeypatch.setattr(runtime.processor.small, "flush_chunks", 4)  # several batches in flight
    embedder, pool = runtime.embedder, runtime.pool
    assert pool is not None
    model_threads: set[str] = set()
    write_threads: set[str] = set()
    running = threading.Event()
    parsed_meanwhile = threading.Event()
    overlapped: list[bool] = []
    embed, outcome, write = embedder.embed_documents, pool.outcome, runtime.processor.committer.writer.commit

    def embed_spy(texts: list[str]) -> Any:
        model_threads.add(threading.current_thread().name)
        running.set()
        try:
            if not overlapped:  # the first batch waits until a parse result is taken meanwhile
                overlapped.append(parsed_meanwhile.wait(timeout=30))
            return embed(texts)
        finally:
            running.clear()

    def outcome_spy(future: Any) -> Any:
        if running.is_set():
            parsed_meanwhile.set()
        return outcome(future)

    def write_spy(*args: Any) -> Any:
        write_threads.add(threading.current_thread().name)
        return write(*args)

    monkeypatch.setattr(embedder, "embed_documents", embed_spy)
    monkeypatch.setattr(pool, "outcome", outcome_spy)
    monkeypatch.setattr(runtime.processor.committer.writer, "commit", write_spy)
    report = runtime.indexer.sync_share("s")

    assert report.failed == 0 and report.new >= len(topics)
    assert overlapped == [True]  # parsing went on while the model ran
    assert threading.current_thread().name not in model_threads
    assert write_threads == {threading.current_thread().name}
    points = list(runtime.store.points(with_vectors=True))
    ours = [p for p in points if p.payload["metadata"]["path"].startswith("batches/")]
    assert len(ours) == len(topics)  # one chunk per file
    texts = [p.payload["page_content"] for p in ours]
    stored = np.array([p.dense for p in ours])
    alone = np.stack([embed([t])[0] for t in texts])
    similarity = stored @ alone.T
    assert (np.argmax(similarity, axis=1) == np.arange(len(texts))).all()  # its own text's vector
    assert similarity.diagonal().min() > 0.98
