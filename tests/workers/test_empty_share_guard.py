"""A share that looks empty is not a reason to empty the index (issue 20, part 7): a share root
that vanished or became another folder or device holds its deletions, and so does a reconcile
that would delete more than max_delete_fraction of a share at once; until the files return
(nothing is redone) or an operator confirms."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from index.permissions.readers import Principal
from tests.conftest import run_cli
from workers.runtime import Runtime, open_runtime
from workers.settings import load_settings
from workers.status import format_status, status_report

pytestmark = pytest.mark.integration
ROOT = Principal("root", ("root",))
WORDS = ["walrus", "quokka", "lemur", "ibex", "tapir", "okapi"]


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    for word in WORDS:
        (root / f"{word}.txt").write_text(f"The {word} pump in hall three was rebuilt in May.")
    return root


@pytest.fixture
def runtime(tmp_path: Path, share: Path) -> Iterator[Runtime]:
    rt = open_runtime(load_settings(data_dir=tmp_path / "data", shares={"s": share}), warm=False)
    assert rt.indexer.sync_share("s").new == len(WORDS)
    yield rt
    rt.close()


def _found(rt: Runtime, word: str) -> bool:
    hits = rt.searcher.search(word, ROOT, k=3, mode="sparse")
    return any(h.metadata["path"] == f"{word}.txt" for h in hits)


def test_a_share_folder_replaced_by_an_empty_one_keeps_its_index(
    runtime: Runtime, share: Path, tmp_path: Path
) -> None:
    away = tmp_path / "unplugged"
    share.rename(away)
    share.mkdir()  # what a mount point shows when the mount drops
    report = runtime.indexer.sync_share("s")
    assert report.deleted == 0
    held = report.held_deletions["s"]
    assert held["documents"] == len(WORDS) and "another folder or device" in held["reason"]
    assert all(_found(runtime, w) for w in WORDS)  # still searchable
    status = status_report(runtime.catalog)
    assert status["held_deletions"]["s"]["documents"] == len(WORDS)
    assert "deletes --confirm s" in format_status(status)
    assert runtime.indexer.sync_share("s").deleted == 0  # held again, not done

    share.rmdir()
    away.rename(share)  # the mount is back
    embedded = runtime.embedder.embedded_total
    back = runtime.indexer.sync_share("s")
    assert (back.deleted, back.new, back.changed, back.unchanged) == (0, 0, 0, len(WORDS))
    assert runtime.embedder.embedded_total == embedded  # nothing redone
    assert runtime.catalog.held_deletions() == {}


def test_a_missing_share_root_holds_its_deletions(runtime: Runtime, share: Path) -> None:
    shutil.rmtree(share)
    report = runtime.indexer.sync_share("s")
    assert report.deleted == 0 and "missing or unreachable" in report.held_deletions["s"]["reason"]
    assert all(_found(runtime, w) for w in WORDS)


def test_deleting_most_of_a_share_waits_for_a_confirmation(
    runtime: Runtime, share: Path, tmp_path: Path
) -> None:
    (share / "walrus.txt").unlink()  # one of six: an ordinary delete
    assert runtime.indexer.sync_share("s").deleted == 1
    for word in WORDS[1:4]:  # three of the five left: more than half at once
        (share / f"{word}.txt").unlink()
    report = runtime.indexer.sync_share("s")
    assert report.deleted == 0 and "3 of 5 documents" in report.held_deletions["s"]["reason"]
    assert _found(runtime, "quokka")

    data = str(tmp_path / "data")
    listed = run_cli("deletes", "--data-dir", data, "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["s"]["documents"] == 3
    confirmed = run_cli("deletes", "--confirm", "s", "--data-dir", data)
    assert confirmed.returncode == 0, confirmed.stderr
    assert "3 held document(s)" in confirmed.stdout
    done = runtime.indexer.sync_share("s")
    assert done.deleted == 3 and not done.held_deletions
    assert not _found(runtime, "quokka") and _found(runtime, "tapir")
    again = run_cli("deletes", "--confirm", "s", "--data-dir", data)
    assert again.returncode == 1 and "no deletions are held" in again.stderr


def test_a_deleted_documents_vectors_are_kept_hidden_and_reused_when_its_content_returns(
    runtime: Runtime, share: Path
) -> None:
    text = (share / "ibex.txt").read_text()
    record = runtime.catalog.find("s", "ibex.txt")
    (share / "ibex.txt").unlink()
    assert runtime.indexer.sync_share("s").deleted == 1
    assert not _found(runtime, "ibex")  # deleted: found by nobody
    kept = runtime.store.document_points(record.id)
    assert kept and all(p.metadata["acl"] == [] for p in kept)
    assert runtime.catalog.get(record.id).kept  # type: ignore[union-attr]

    (share / "archive").mkdir()
    (share / "archive" / "ibex-2023.txt").write_text(text)  # days later, elsewhere
    embedded = runtime.embedder.embedded_total
    back = runtime.indexer.sync_share("s")
    assert back.new == 1 and back.embedded == 0 and back.reused == len(kept)
    assert runtime.embedder.embedded_total == embedded
    hit = runtime.searcher.search("ibex", ROOT, k=1, mode="sparse")[0]
    assert hit.metadata["path"] == "archive/ibex-2023.txt"

    # past keep_deleted_days the kept points are removed at the next reconcile
    from sqlalchemy import update

    from index.catalog.tables import DocumentRow

    with runtime.catalog.session() as s:  # type: ignore[attr-defined]
        s.execute(update(DocumentRow).where(DocumentRow.id == record.id)
                  .values(kept_until=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
    runtime.indexer.sync_share("s")
    assert runtime.store.document_points(record.id) == []
    assert not runtime.catalog.get(record.id).kept  # type: ignore[union-attr]


def test_with_keep_deleted_days_0_a_deleted_documents_points_go_at_once(
    tmp_path: Path, share: Path
) -> None:
    settings = load_settings(data_dir=tmp_path / "d0", shares={"s": share}, keep_deleted_days=0)
    rt = open_runtime(settings, warm=False)
    try:
        rt.indexer.sync_share("s")
        record = rt.catalog.find("s", "okapi.txt")
        (share / "okapi.txt").unlink()
        assert rt.indexer.sync_share("s").deleted == 1
        assert rt.store.document_points(record.id) == []
    finally:
        rt.close()
