"""``shareindex verify``: each kind of drift between share, catalog and index is found, named
and repaired through the normal pipeline; the command's exit codes (issue 20, part 1)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.corpus import _paragraph
from index.permissions.readers import Principal
from index.vectors import IndexPoint
from tests.conftest import run_cli
from tests.helpers import free_port, running_service
from workers.runtime import Runtime, open_runtime
from workers.settings import load_settings
from workers.sync.verify import KINDS, verify_runtime

pytestmark = pytest.mark.integration
ROOT = Principal("root", ("root",))


def _long(seed: int) -> str:
    rng = random.Random(seed)
    return "\n\n".join(_paragraph(rng) for _ in range(12))


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    for i in range(9):
        (root / f"doc{i}.txt").write_text(f"Document {i}. " + _long(i))
    return root


@pytest.fixture
def runtime(tmp_path: Path, share: Path) -> Iterator[Runtime]:
    rt = open_runtime(load_settings(data_dir=tmp_path / "data", shares={"v": share}), warm=False)
    rt.indexer.sync_share("v")
    yield rt
    rt.close()


def _doc_points(rt: Runtime, path: str) -> tuple[Any, list[Any]]:
    record = rt.catalog.find("v", path)
    assert record is not None and record.chunk_count >= 2
    points = [p for p in rt.store.points(with_vectors=True) if p.metadata["doc_id"] == record.id]
    return record, points


def _copy(point: Any, **meta: Any) -> IndexPoint:
    """A stored point written again under other metadata (its id from that metadata)."""
    from index.schema import point_id

    metadata = {**point.metadata, **meta}
    pid = point_id(metadata["doc_id"], metadata["version"], metadata["chunk_index"])
    return IndexPoint(pid, point.payload["page_content"], point.dense, point.sparse, metadata)


def test_every_kind_of_drift_is_found_and_repaired(runtime: Runtime, share: Path) -> None:
    clean = verify_runtime(runtime, [], False, runtime.indexer.sync_share)
    assert clean["clean"] and clean["checked"]["files"] == 9 and clean["checked"]["documents"] == 9
    rt, store = runtime, runtime.store

    (share / "new.txt").write_text("A file nobody indexed yet. " + _long(50))  # not_indexed
    (share / "doc0.txt").write_text(
        "Edited behind the index's back: zebrafish. " + _long(51)
    )  # stale
    (share / "doc1.txt").unlink()  # gone
    record, points = _doc_points(rt, "doc2.txt")  # incomplete: a chunk lost
    store.delete_chunks(record.id, record.version, [1])
    record, points = _doc_points(rt, "doc3.txt")  # duplicate: a point past the last chunk
    store.upsert([_copy(points[0], chunk_index=record.chunk_count)])
    record, points = _doc_points(rt, "doc4.txt")  # mixed: an older version left behind
    store.upsert([_copy(p, version=record.version + 7) for p in points])
    rt.catalog.allocate_version(record.id, "x")  # (the number is taken)
    record, points = _doc_points(rt, "doc5.txt")  # old version only
    store.delete_version(record.id, record.version)
    store.upsert([_copy(p, version=record.version + 9) for p in points])
    record, points = _doc_points(rt, "doc6.txt")  # orphan: points of no catalog document
    store.upsert([_copy(p, doc_id="0" * 8 + "-orphan") for p in points])
    record, _ = _doc_points(rt, "doc7.txt")  # acl: the payload says what the share does not
    store.set_acl(record.id, ["user:mallory"], [])
    store.set_share_readers("v", ["user:mallory"], [])  # share: the layer of no share's own

    found = verify_runtime(rt, [], False, rt.indexer.sync_share)
    assert not found["clean"]
    by_path = {(d["kind"], d["path"]) for d in found["items"]}
    assert by_path >= {
        ("not_indexed", "new.txt"), ("stale_content", "doc0.txt"), ("gone", "doc1.txt"),
        ("incomplete", "doc2.txt"), ("duplicate", "doc3.txt"), ("mixed_versions", "doc4.txt"),
        ("old_version", "doc5.txt"), ("orphan_points", "doc6.txt"), ("acl_mismatch", "doc7.txt"),
        ("share_acl_mismatch", ""),
    }  # fmt: skip
    assert {k: n for k, n in found["drift"].items() if n} == dict.fromkeys(KINDS, 1)
    assert not any(d["path"] == "doc8.txt" for d in found["items"])  # untouched: no drift

    embedded = rt.embedder.embedded_total
    repaired = verify_runtime(rt, [], True, rt.indexer.sync_share)
    assert repaired["repaired"] == dict.fromkeys(KINDS, 1)
    assert repaired["after_repair"]["clean"], repaired["after_repair"]["items"]
    # the repair reused vectors: only the new and the edited files' text was embedded
    assert rt.embedder.embedded_total - embedded <= 2 * 14
    hits = rt.searcher.search("zebrafish", ROOT, k=1, mode="sparse")
    assert hits[0].metadata["path"] == "doc0.txt"
    assert rt.catalog.find("v", "doc1.txt").status == "deleted"


def test_the_command_exits_3_on_drift_and_repairs_through_the_running_service(
    tmp_path: Path, share: Path
) -> None:
    data = tmp_path / "data"
    proc = run_cli("sync", "--share", f"v={share}", "--data-dir", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    (share / "late.txt").write_text("Written while nothing watched. " + _long(60))
    args = ("verify", "--share", f"v={share}", "--data-dir", str(data), "--json")
    proc = run_cli(*args)
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["drift"]["not_indexed"] == 1 and report["items"][0]["path"] == "late.txt"

    settings = load_settings(data_dir=data, shares={"v": share}, api_port=free_port(),
                             reconcile_interval_s=3600)  # fmt: skip
    with running_service(settings) as running:
        # the service indexed it at its first reconcile; now drift only the index knows
        record = running.runtime.catalog.find("v", "doc3.txt")
        running.runtime.store.set_acl(record.id, ["user:mallory"], [])
        proc = run_cli(*args)  # through the service: it holds the index
        assert proc.returncode == 3, proc.stderr
        assert json.loads(proc.stdout)["drift"]["acl_mismatch"] == 1
        proc = run_cli(*args, "--repair")
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["repaired"] == {"acl_mismatch": 1} and result["after_repair"]["clean"]
        points = running.runtime.store.document_points(record.id)
        assert all("user:mallory" not in p.metadata["acl"] for p in points)
    proc = run_cli("verify", "--data-dir", str(tmp_path / "elsewhere"))  # fatal: no share
    assert proc.returncode == 1 and "no share given" in proc.stderr


def test_a_file_renamed_away_and_a_new_file_under_its_old_name_are_two_documents(
    tmp_path: Path,
) -> None:
    """An editor keeps the old copy under another name and saves a new file under the name (the
    chaos soak found it): the new file once took the id its name was first seen with, which the
    renamed document still had, and the renamed file was lost from the catalog."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "report.txt").write_text("The walrus pump was inspected in April.")
    args = ("--share", f"s={share}", "--data-dir", str(tmp_path / "data"), "--json")
    assert run_cli("sync", *args).returncode == 0
    (share / "report.txt").rename(share / "report-old.txt")
    assert (
        json.loads(run_cli("sync", *args).stdout)["documents"]["moved"] == 1
    )  # the watcher's view
    (share / "report.txt").write_text("The quokka valve was replaced in May.")
    report = json.loads(run_cli("sync", *args).stdout)
    assert (report["documents"]["new"], report["chunks"]["embedded"]) == (1, 1), report
    verified = run_cli("verify", *args)
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["checked"] == {"files": 2, "documents": 2, "points": 2}
    for needle, path in (("walrus pump", "report-old.txt"), ("quokka valve", "report.txt")):
        found = json.loads(run_cli("search", needle, "--k", "1", *args[2:]).stdout)
        assert [h["metadata"]["path"] for h in found] == [path]


def test_a_file_renamed_onto_a_path_seen_but_never_indexed_does_not_stop_the_share(
    tmp_path: Path,
) -> None:
    """The chaos soak's stuck share: the service was killed after it recorded a new file
    (pending, never indexed), and another file was renamed onto it while it was down. The
    reconcile took the rename for a move onto a live document, which the catalog refuses, and
    every pass failed the same way. Now the file there is indexed (reusing the vanished
    document's vectors) and the vanished one deleted."""
    from index.catalog import SqlCatalog

    share = tmp_path / "share"
    share.mkdir()
    (share / "a.txt").write_text("The walrus pump was inspected in April.")
    args = ("--share", f"s={share}", "--data-dir", str(tmp_path / "data"), "--json")
    assert run_cli("sync", *args).returncode == 0
    (share / "b.txt").write_text("A draft, seen but not indexed yet.")
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'data' / 'catalog.db'}")
    try:  # what a service killed between planning and indexing b.txt leaves
        doc = catalog.new_id("s", "b.txt")
        catalog.upsert_seen(doc, "s", "b.txt", 34, 1, ["everyone"], [], None, filetype="txt")
    finally:
        catalog.close()
    (share / "a.txt").replace(share / "b.txt")
    synced = run_cli("sync", *args)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    report = json.loads(synced.stdout)
    assert report["documents"]["deleted"] == 1 and report["chunks"]["embedded"] == 0, report
    verified = run_cli("verify", *args)
    assert verified.returncode == 0, verified.stdout
    found = json.loads(run_cli("search", "walrus pump", "--k", "1", *args[2:]).stdout)
    assert [h["metadata"]["path"] for h in found] == ["b.txt"]
