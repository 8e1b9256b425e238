"""The index follows the share: real watchdog, real files, the embedded service in this process.

Each test asserts the final index state and how many embeddings were computed for it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from index.catalog import DELETED, PENDING
from index.permissions.readers import Principal
from index.search import Searcher
from tests.helpers import free_port, readable, running_service, wait_until
from workers.runtime import Runtime
from workers.settings import load_settings
from workers.watch.embedded import EmbeddedService

pytestmark = pytest.mark.integration
ROOT_USER = Principal("root", ("root",))


@dataclass
class Live:
    root: Path
    runtime: Runtime
    service: EmbeddedService
    said: list[str]

    @property
    def embedded(self) -> int:
        return self.runtime.embedder.embedded_total

    def points(self, path: str) -> list[Any]:
        return [p for p in self.runtime.store.points() if p.metadata["path"] == path]

    def texts(self, path: str) -> list[str]:
        return [
            p.payload["page_content"]
            for p in sorted(self.points(path), key=lambda p: p.payload["metadata"]["chunk_index"])
        ]

    def versions(self, path: str) -> set[int]:
        return {p.payload["metadata"]["version"] for p in self.points(path)}

    def record(self, path: str) -> Any:
        return self.runtime.catalog.find("live", path)

    def settle(self) -> None:
        """Wait until the service caught up with the share (no fixed sleep): every file is in
        the catalog at its size and mtime and not pending, every live document's file exists,
        the watcher's queue and debouncer are empty and the bulk lane idle. A late event finds
        nothing to do."""
        source = self.runtime.indexer.sources["live"]
        ignore = self.runtime.settings.ignore_patterns

        def caught_up() -> bool:
            service = self.service
            if not service.events.empty() or len(service.debouncer) or (
                service.bulk is not None and not service.bulk.idle()
            ):
                return False
            disk = {e.path: e for e in source.scan(ignore)}
            known = self.runtime.catalog.documents("live")
            for path, entry in disk.items():
                record = known.get(path)
                if record is None or record.status == PENDING:
                    return False
                if (record.size, record.mtime_ns) != (entry.size, entry.mtime_ns):
                    return False
            return all(r.status == DELETED or r.parent_id or path in disk
                       for path, r in known.items())  # fmt: skip

        wait_until(caught_up, 120, "the service caught up with the share")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("live")
    root = base / "share"
    root.mkdir()
    settings = load_settings(
        data_dir=base / "data",
        shares={"live": root},
        api_port=free_port(),
        debounce_s=0.3,
        write_settle_s=3.0,
    )
    with running_service(settings) as running:
        yield Live(root, running.runtime, running.service, running.said)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_create_is_indexed_in_about_a_second(live: Live) -> None:
    before = live.embedded
    _write(live.root / "create/a.txt", "The dryer belt is tensioned to 40 newtons.\n")
    # how fast is bench_freshness's to say (make bench); here: that it comes
    wait_until(lambda: live.points("create/a.txt"), 120, "a.txt indexed")
    assert live.texts("create/a.txt") == ["The dryer belt is tensioned to 40 newtons."]
    assert live.versions("create/a.txt") == {1}
    assert live.embedded - before == 1


def test_quick_edits_end_at_the_newest_content_with_one_embedding(live: Live) -> None:
    path = live.root / "edits/e.txt"
    _write(path, "Edit zero of the kiln log.\n")
    wait_until(lambda: live.points("edits/e.txt"), 10, "e.txt indexed")
    live.settle()
    before = live.embedded
    for i in range(1, 6):
        path.write_text(f"Edit {i} of the kiln log.\n")
        time.sleep(0.05)
    wait_until(
        lambda: live.texts("edits/e.txt") == ["Edit 5 of the kiln log."], 10, "the last edit"
    )
    live.settle()
    assert live.texts("edits/e.txt") == ["Edit 5 of the kiln log."]
    assert live.versions("edits/e.txt") == {2}  # one new version for the burst, the old one removed
    assert live.embedded - before == 1


def test_rename_is_re_pointed_without_embedding(live: Live) -> None:
    _write(live.root / "rename/old.md", "# Valve\n\nThe relief valve opens at 8 bar.\n")
    wait_until(lambda: live.points("rename/old.md"), 10, "old.md indexed")
    live.settle()
    doc_id = live.record("rename/old.md").id
    before = live.embedded
    os.rename(live.root / "rename/old.md", live.root / "rename/new.md")
    wait_until(lambda: live.points("rename/new.md"), 10, "new.md re-pointed")
    live.settle()
    assert live.points("rename/old.md") == []
    assert live.record("rename/new.md").id == doc_id
    assert {p.payload["metadata"]["filename"] for p in live.points("rename/new.md")} == {"new.md"}
    assert live.embedded == before


def test_move_across_folders_without_embedding(live: Live) -> None:
    _write(live.root / "from/m.txt", "The spare impeller sits on shelf four.\n")
    wait_until(lambda: live.points("from/m.txt"), 10, "m.txt indexed")
    live.settle()
    before = live.embedded
    (live.root / "to").mkdir()
    os.rename(live.root / "from/m.txt", live.root / "to/m.txt")
    wait_until(lambda: live.points("to/m.txt") and not live.points("from/m.txt"), 10, "m.txt moved")
    live.settle()
    assert live.embedded == before
    assert live.versions("to/m.txt") == {1}


def test_renaming_a_folder_of_many_files_embeds_nothing(live: Live) -> None:
    for i in range(20):
        _write(
            live.root / f"folder/doc{i:02d}.txt",
            f"Folder document number {i} about pallet racking bay {i}.\n",
        )
    wait_until(
        lambda: all(live.points(f"folder/doc{i:02d}.txt") for i in range(20)),
        30,
        "20 files indexed",
    )
    live.settle()
    before = live.embedded
    os.rename(live.root / "folder", live.root / "renamed")
    wait_until(
        lambda: all(live.points(f"renamed/doc{i:02d}.txt") for i in range(20)),
        30,
        "20 files re-pointed",
    )
    live.settle()
    assert live.embedded == before
    assert all(not live.points(f"folder/doc{i:02d}.txt") for i in range(20))


def test_delete_a_file_and_a_folder(live: Live) -> None:
    _write(live.root / "del/one.txt", "A file that will be deleted soon.\n")
    for i in range(5):
        _write(live.root / f"deldir/f{i}.txt", f"File {i} in a folder that will be deleted.\n")
    wait_until(
        lambda: (
            live.points("del/one.txt") and all(live.points(f"deldir/f{i}.txt") for i in range(5))
        ),
        30,
        "indexed",
    )
    live.settle()
    before = live.embedded
    (live.root / "del/one.txt").unlink()
    for i in range(5):
        (live.root / f"deldir/f{i}.txt").unlink()
    (live.root / "deldir").rmdir()
    wait_until(
        lambda: (
            not readable(live.points("del/one.txt"))
            and not any(readable(live.points(f"deldir/f{i}.txt")) for i in range(5))
        ),
        10,
        "gone",
    )
    live.settle()
    assert live.record("del/one.txt").status == DELETED  # a tombstone
    assert live.record("deldir/f0.txt").status == DELETED
    assert live.embedded == before


def test_a_file_written_slowly_is_indexed_once_complete(live: Live) -> None:
    before = live.embedded
    pieces = [
        f"Section {i}: the compressor log shows pressure reading {i * 7} bar at noon. " * 3
        for i in range(5)
    ]
    with open(live.root / "slow.txt", "w") as fh:
        for piece in pieces:
            fh.write(piece + "\n")
            fh.flush()
            time.sleep(0.6)  # longer than the debounce: only the close says it is complete
    wait_until(lambda: live.points("slow.txt"), 15, "slow.txt indexed")
    live.settle()
    assert "\n".join(live.texts("slow.txt")).count("Section") == 5 * 3
    assert live.versions("slow.txt") == {1}  # indexed once, complete
    assert live.embedded - before == len(live.points("slow.txt"))


def test_atomic_replace_makes_a_new_version(live: Live) -> None:
    target = live.root / "atomic.txt"
    _write(target, "Old contents of the atomic file.\n")
    wait_until(lambda: live.points("atomic.txt"), 10, "atomic.txt indexed")
    live.settle()
    before = live.embedded
    temp = live.root / "atomic.txt.tmp"  # an ignored name: never indexed itself
    temp.write_text("New contents of the atomic file.\n")
    os.replace(temp, target)
    wait_until(
        lambda: live.texts("atomic.txt") == ["New contents of the atomic file."],
        10,
        "the new contents",
    )
    live.settle()
    assert live.versions("atomic.txt") == {2}
    assert live.record("atomic.txt.tmp") is None
    assert live.embedded - before == 1


def test_a_reader_never_sees_the_document_missing(live: Live) -> None:
    paragraphs = [
        f"Paragraph {i} of the turbine overhaul report describes blade {i} in detail." * 4
        for i in range(8)
    ]
    _write(live.root / "reader.md", "# Turbine overhaul\n\n" + "\n\n".join(paragraphs))
    wait_until(lambda: live.points("reader.md"), 15, "reader.md indexed")
    live.settle()
    doc_id = live.record("reader.md").id
    searcher = Searcher(live.runtime.store, live.runtime.embedder)
    misses: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if not live.runtime.store.document_points(doc_id):
                misses.append("count")
            hits = searcher.search("turbine overhaul report blade", ROOT_USER, k=20)
            if not any(h.metadata["doc_id"] == doc_id for h in hits):
                misses.append("search")

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for edit in range(3):
            paragraphs[edit] = (
                f"Edit {edit}: blade {edit} of the turbine overhaul report was replaced."
            )
            (live.root / "reader.md").write_text("# Turbine overhaul\n\n" + "\n\n".join(paragraphs))
            wait_until(
                lambda e=edit: any(f"Edit {e}:" in t for t in live.texts("reader.md")),
                15,
                f"edit {edit}",
            )
            live.settle()
    finally:
        stop.set()
        reader.join()
    assert misses == []
    assert live.versions("reader.md") == {4}


def test_freshness_is_measured_and_exposed(live: Live) -> None:
    _write(live.root / "fresh.txt", "Freshness probe for the status command.\n")
    wait_until(lambda: live.points("fresh.txt"), 10, "fresh.txt indexed")
    fresh = live.runtime.catalog.freshness()
    assert fresh["samples"] >= 1
    assert fresh["last_s"] > 0
    r = httpx.get(f"{live.service.url}/metrics", timeout=10)
    assert r.status_code == 200
    assert 'shareindex_freshness_seconds_count{change="new",share="live"}' in r.text


def test_the_watcher_never_reads_through_a_link_out_of_the_share(
    live: Live, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (live.root / "escape").symlink_to(outside)
    (outside / "secret.txt").write_text("TOPSECRET written outside the share.\n")
    _write(live.root / "after-link.txt", "A marker written after the outside file.\n")
    wait_until(lambda: live.points("after-link.txt"), 10, "the marker indexed")
    live.settle()
    assert live.points("escape/secret.txt") == []
    hits = Searcher(live.runtime.store, live.runtime.embedder).search("TOPSECRET", ROOT_USER, k=50)
    assert all("TOPSECRET" not in h.page_content for h in hits)


def test_a_polled_share_is_followed_without_inotify(tmp_path: Path) -> None:
    root = tmp_path / "nfs"
    root.mkdir()
    settings = load_settings(
        data_dir=tmp_path / "data", shares={"nfs": root}, polling_shares=["nfs"], polling_interval_s=0.5,
        api_port=free_port(), debounce_s=0.3, write_settle_s=1.5,
    )  # fmt: skip
    with running_service(settings) as running:
        catalog = running.runtime.catalog
        (root / "remote.txt").write_text("Written on another machine of the network share.\n")
        record = wait_until(lambda: catalog.find("nfs", "remote.txt"), 15, "remote.txt seen")
        wait_until(lambda: catalog.get(record.id).status == "indexed", 15, "remote.txt indexed")
        (root / "remote.txt").unlink()
        wait_until(
            lambda: catalog.find("nfs", "remote.txt").status == DELETED, 15, "remote.txt deleted"
        )


def test_polling_an_unknown_share_is_a_config_error(tmp_path: Path) -> None:
    from workers.settings import ConfigError

    with pytest.raises(ConfigError, match="polling_shares names unknown shares: nope"):
        load_settings(data_dir=tmp_path, shares={"a": tmp_path}, polling_shares=["nope"])


def test_an_indexing_error_does_not_stop_the_service(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.watch.loop

    monkeypatch.setattr(workers.watch.loop, "RETRY_S", 1.0)
    real = live.runtime.indexer.sync_paths
    calls: list[int] = []

    def broken_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated outage of the index store")
        return real(*args, **kwargs)

    monkeypatch.setattr(live.runtime.indexer, "sync_paths", broken_once)
    _write(live.root / "outage.txt", "Written while the index store was briefly unavailable.\n")
    wait_until(lambda: live.points("outage.txt"), 15, "outage.txt indexed after the retry")
    assert calls and any(
        "indexing step failed (RuntimeError: simulated outage" in line for line in live.said
    )
