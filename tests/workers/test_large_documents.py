"""Large documents: parsed in parts, embedded and written in slices, and never in the way of a
small change (issue 19). Real runtime, real parse processes, real embedded index; the sizes
are scaled down by settings (a "large" document here is 0.1 MB, parts of 40 KB)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.corpus import _paragraph
from index.permissions.readers import Principal
from ingest.stages.parts import edge, part_count
from tests.helpers import free_port, running_service, wait_until
from workers.runtime import Runtime, open_runtime
from workers.settings import load_settings
from workers.status import format_status

pytestmark = pytest.mark.integration
ROOT = Principal("root", ("root",))
LARGE = dict(large_document_mb=0.1, part_mb=0.04, slice_chunks=16)


def _text(seed: int, paragraphs: int) -> list[str]:
    rng = random.Random(seed)
    return [_paragraph(rng) for _ in range(paragraphs)]


def _points(runtime: Runtime, path: str) -> list[Any]:
    return [p for p in runtime.store.points() if p.metadata["path"] == path]


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    return root


@pytest.fixture
def runtime(tmp_path: Path, share: Path) -> Iterator[Runtime]:
    settings = load_settings(data_dir=tmp_path / "data", shares={"big": share}, **LARGE)
    rt = open_runtime(settings, warm=False)
    yield rt
    rt.close()


def test_part_edges_cover_the_text_once_and_do_not_depend_on_the_part() -> None:
    data = "\n\n".join(_text(1, 400)).encode()
    size = 5000
    edges = [edge(data, k * size, size) for k in range(part_count(len(data), size) + 1)]
    assert edges[0] == 0 and edges[-1] == len(data)
    assert edges == sorted(set(edges))  # increasing: no part empty, none overlapping
    for at in edges[1:-1]:
        assert data[at - 2 : at] == b"\n\n"  # cut after a blank line
    assert b"".join(data[a:b] for a, b in zip(edges, edges[1:], strict=False)) == data
    sjis = ("検査報告書の内容です。\n" * 2000).encode("cp932")  # no blank line: a line break
    cut = edge(sjis, 7001, 7000)
    assert sjis[cut - 1 : cut] == b"\n" and sjis[:cut].decode("cp932")


def test_a_large_document_is_written_in_slices_and_an_edit_reuses_its_vectors(
    runtime: Runtime, share: Path
) -> None:
    paragraphs = _text(2, 260)  # ~150 KB: 4 parts, ~14 slices
    (share / "manual.txt").write_text("\n\n".join(paragraphs))
    asked: list[int | None] = []
    stored = runtime.store.stored_vectors

    def spy(doc_id: str, version: int, indexes: Any = None) -> Any:
        asked.append(None if indexes is None else len(indexes))
        return stored(doc_id, version, indexes)

    runtime.store.stored_vectors = spy  # type: ignore[method-assign]
    first = runtime.indexer.sync_share("big")
    record = runtime.catalog.find("big", "manual.txt")
    assert (first.new, record.status, record.version) == (1, "indexed", 1)
    points = _points(runtime, "manual.txt")
    assert sorted(p.metadata["chunk_index"] for p in points) == list(range(record.chunk_count))
    assert record.chunk_count > 3 * LARGE["slice_chunks"]
    assert {p.metadata["partial"] for p in points} == {False}
    assert {p.metadata["chunk_count"] for p in points} == {record.chunk_count}
    last = [p for p in points if p.metadata["chunk_index"] == record.chunk_count - 1][0]
    assert last.metadata["next_chunk"] is None
    joined = " ".join(p.payload["page_content"] for p in points)
    assert all(paragraphs[i][:40] in joined for i in (0, 100, 259))  # every part is in

    paragraphs[130] = "The gasket supplier changed to Nordic Seals in March. " + paragraphs[130]
    (share / "manual.txt").write_text("\n\n".join(paragraphs))
    edited = runtime.indexer.sync_share("big")
    record = runtime.catalog.find("big", "manual.txt")
    assert (edited.changed, record.version) == (1, 2)
    assert edited.embedded <= 3 and edited.reused >= record.chunk_count - 3
    assert {p.metadata["version"] for p in _points(runtime, "manual.txt")} == {2}
    # the old version's vectors were fetched slice by slice, never all at once
    assert asked and None not in asked and max(asked) <= LARGE["slice_chunks"]
    hit = runtime.searcher.search("gasket supplier Nordic Seals", ROOT, k=1)[0]
    assert hit.metadata["path"] == "manual.txt" and "Nordic Seals" in hit.page_content


def test_readers_keep_the_old_version_until_the_new_one_is_complete(
    runtime: Runtime, share: Path
) -> None:
    paragraphs = _text(3, 200)
    paragraphs[0] = "The first edition names the pump Walrus. " + paragraphs[0]
    (share / "spec.txt").write_text("\n\n".join(paragraphs))
    seen: list[tuple[list[str], list[Any]]] = []
    processor = runtime.processor

    def look() -> None:  # between two slices, as a reader would see the index
        if len(seen) < 4:
            old = runtime.searcher.search("pump Walrus first edition", ROOT, k=50, mode="sparse")
            new = runtime.searcher.search("pump Quokka second", ROOT, k=50, mode="sparse")
            seen.append(([h.metadata["path"] for h in old + new], old + new))

    processor.large.pause = look
    runtime.indexer.sync_share("big")  # a new document: its slices are searchable, partial
    assert any(hits and all(h.metadata["partial"] for h in hits) for _, hits in seen[1:])
    seen.clear()
    paragraphs[0] = "The second edition names the pump Quokka. " + paragraphs[0]
    paragraphs.append("Appendix " + "x" * 50)
    (share / "spec.txt").write_text("\n\n".join(paragraphs))
    runtime.indexer.sync_share("big")
    assert len(seen) == 4
    for _, hits in seen[1:]:  # mid-write: only the complete old version is readable
        assert hits and {h.metadata["version"] for h in hits} == {1}
        assert not any("Quokka" in h.page_content for h in hits)
    new_points = [p for p in _points(runtime, "spec.txt")]
    assert {p.metadata["version"] for p in new_points} == {2}
    assert {tuple(p.metadata["acl"]) for p in new_points} != {()}
    hit = runtime.searcher.search("pump Quokka second edition", ROOT, k=1, mode="sparse")[0]
    assert hit.metadata["version"] == 2


def test_a_file_that_changes_mid_write_leaves_no_slices_and_a_permission_change_holds(
    runtime: Runtime, share: Path
) -> None:
    path = share / "log.txt"
    path.write_text("\n\n".join(_text(4, 200)))
    runtime.indexer.sync_share("big")
    doc_id = runtime.catalog.find("big", "log.txt").id
    calls = 0

    def touch_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            with path.open("a") as fh:
                fh.write("\n\nappended while it was being indexed\n")

    path.write_text("\n\n".join(_text(5, 200)))
    runtime.processor.large.pause = touch_once
    report = runtime.indexer.sync_share("big")
    assert report.superseded == 1
    record = runtime.catalog.find("big", "log.txt")
    assert record.version == 1  # the old version stays, whole; the new slices are gone
    assert {p.metadata["version"] for p in _points(runtime, "log.txt")} == {1}

    # a permission change while the next version is written: its final ACL is the new one
    runtime.processor.large.pause = lambda: None
    runtime.indexer.sync_share("big")  # the appended version
    before = runtime.catalog.find("big", "log.txt").version
    calls = 0

    def acl_change_once() -> None:  # what the planner does for a chmod, mid-write
        nonlocal calls
        calls += 1
        if calls == 2:
            runtime.catalog.set_acl(doc_id, ["user:root"], [])
            runtime.store.set_acl(doc_id, ["user:root"], [])

    path.write_text("\n\n".join(_text(6, 200)))
    runtime.processor.large.pause = acl_change_once
    runtime.indexer.sync_share("big")
    record = runtime.catalog.find("big", "log.txt")
    assert record.status == "indexed" and record.version > before
    points = runtime.store.document_points(doc_id)
    assert {p.metadata["version"] for p in points} == {record.version}
    assert {tuple(p.metadata["acl"]) for p in points} == {("user:root",)}


def test_a_permission_change_while_a_small_document_is_written_holds(
    runtime: Runtime, share: Path
) -> None:
    """The chaos soak's lost chmod: the planner changed the readers (catalog and points) while
    an edit of the document was being written with the readers it was planned with; the new
    version's points must end with the readers the catalog holds."""
    path = share / "note.txt"
    path.write_text("The walrus pump was inspected in April.")
    runtime.indexer.sync_share("big")
    doc_id = runtime.catalog.find("big", "note.txt").id
    upsert = runtime.store.upsert
    changed = []

    def upsert_after_a_chmod(points: Any) -> None:  # what the planner does for a chmod, mid-write
        if not changed:
            changed.append(True)
            runtime.catalog.set_acl(doc_id, ["user:root"], [], None)
            runtime.store.set_acl(doc_id, ["user:root"], [])
        upsert(points)

    runtime.store.upsert = upsert_after_a_chmod  # type: ignore[method-assign]
    path.write_text("The walrus pump was replaced in May.")
    runtime.indexer.sync_share("big")
    assert changed
    record = runtime.catalog.find("big", "note.txt")
    assert record.status == "indexed" and record.version == 2
    points = runtime.store.document_points(doc_id)
    assert {p.metadata["version"] for p in points} == {2}
    assert {tuple(p.metadata["acl"]) for p in points} == {("user:root",)}


def test_a_small_change_goes_first_while_a_large_document_and_a_bulk_arrival_wait(
    tmp_path: Path, share: Path
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data", shares={"big": share}, api_port=free_port(),
        live_max_files=5, **LARGE,
    )  # fmt: skip
    with running_service(settings) as running:
        bulk = running.service.bulk
        assert bulk is not None
        gate = threading.Event()
        held = threading.Event()
        pause = bulk.processor.large.pause
        slices = 0

        def stall() -> None:  # the bulk lane stops after its first slice until the gate opens
            nonlocal slices
            pause()
            slices += 1
            if slices >= 2 and not gate.is_set():
                held.set()
                gate.wait(60)

        bulk.processor.large.pause = stall
        (share / "manual.txt").write_text("\n\n".join(_text(7, 260)))
        wait_until(held.is_set, 60, "the large document's first slices")
        copied = tmp_path / "copied"
        copied.mkdir()
        for i in range(12):  # a bulk arrival: more files than live_max_files at once
            text = f"Copied report {i}. " + _paragraph(random.Random(i))
            (copied / f"c{i:02d}.txt").write_text(text)
        copied.rename(share / "copied")
        wait_until(lambda: bulk.backlog()["documents"] >= 12, 60, "the copied folder queued")
        (share / "notice.txt").write_text("Urgent notice: the zebragate is closed on Friday.")
        hit = wait_until(
            lambda: running.runtime.searcher.search("zebragate", ROOT, k=1, mode="sparse"),
            60, "the notice searchable",
        )  # fmt: skip
        assert hit[0].metadata["path"] == "notice.txt"
        assert running.runtime.catalog.find("big", "manual.txt").status == "pending"
        flight = running.service.in_flight()
        [large] = flight["large_documents"]
        assert large["path"] == "manual.txt" and 0 < large["chunks_done"] < large["chunks_total"]
        backlog = flight["bulk_backlog"]
        assert backlog["documents"] == 12 and backlog["by_size"]["<64KB"]["documents"] == 12
        assert backlog["oldest_waiting_s"] >= 0
        text = format_status({"documents": {}, "pending": [], "failed": [], "acl_unreadable": [],
                              "skipped_by_reason": {}, "in_flight": flight})  # fmt: skip
        assert "in flight: big:manual.txt" in text and "bulk backlog: 12 document(s)" in text
        from workers import metrics

        # the notice was timed with the backlog it met (recorded just after its write, so a
        # search can find it a moment before the sample is there)
        loaded = metrics.FRESHNESS_UNDER_LOAD.labels("big", "new", "10-99")
        wait_until(lambda: loaded._sum.get() > 0, 30, "the notice's freshness sample")
        gate.set()
        wait_until(
            lambda: running.runtime.catalog.find("big", "manual.txt").status == "indexed"
            and bulk.idle(),
            120, "the bulk work done",
        )  # fmt: skip
        counts = running.runtime.catalog.counts()
        assert counts["indexed"] == 14 and counts["pending"] == 0
