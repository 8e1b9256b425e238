"""Attachments and archive members through the whole embedded pipeline: indexed under their
address with their file's readers, re-embedded only where their bytes changed, moved, re-permitted
and removed with their file, and a failed one retried through its file."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.catalog import DELETED, FAILED, INDEXED
from tests.mailfiles import eml, outlook_msg, zip_of
from workers.runtime import Runtime, open_runtime
from workers.settings import load_settings
from workers.status import format_status, status_report
from workers.sync.report import SyncReport

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    (tmp_path / "share" / "mail").mkdir(parents=True)
    rt = open_runtime(load_settings(
        data_dir=tmp_path / "data", shares={"s": tmp_path / "share"}, max_file_mb=0.05,
    ))  # fmt: skip
    yield rt
    rt.close()


def _sync(rt: Runtime) -> SyncReport:
    return rt.indexer.sync_share("s")


def _points(rt: Runtime) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    """Path -> payload metadata of each point in the index."""
    found: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for point in rt.store.points():
        meta = point.payload["metadata"]
        found.setdefault(meta["path"], []).append({**meta, "text": point.payload["page_content"]})
    return found


def _write(path: Path, data: bytes) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(data)
    if path.stat().st_mtime_ns == before:  # a coarse clock: the edit must show
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def test_members_are_documents_that_follow_their_file(runtime: Runtime, tmp_path: Path) -> None:
    share = tmp_path / "share"
    members = {
        "q3/summary.txt": b"The walrus line ran at 97 percent in Q3.",
        "notes.md": b"# Notes\n\nThe pelican budget was approved in October.",
        "huge.txt": b"word " * 12_000,  # over the 50 KB file limit: fails alone
    }
    _write(share / "reports.zip", zip_of(members))
    _write(share / "mail" / "offer.msg", outlook_msg(
        "Offer for the heron project", "Please find the prices attached.",
        [("prices.txt", b"Seventeen flamingo units at 40 yen.")],
    ))  # fmt: skip
    _write(share / "mail" / "fwd.eml", eml("Forward", "See below.", [
        ("inner.eml", eml("Inner", "The kestrel inspection moved to Friday.")),
    ]))  # fmt: skip
    report = _sync(runtime)
    points = _points(runtime)
    assert "walrus" in points["reports.zip#q3/summary.txt"][0]["text"]
    assert "flamingo" in points["mail/offer.msg#attachments/prices.txt"][0]["text"]
    assert "kestrel" in points["mail/fwd.eml#attachments/inner.eml"][0]["text"]
    assert "heron project" in points["mail/offer.msg"][0]["text"]
    assert "Archive reports.zip: 3 file(s)" in points["reports.zip"][0]["text"]
    assert report.new == 7 and report.failed == 1, report.to_dict()
    [failure] = report.failures
    assert failure["path"] == "reports.zip#huge.txt" and "over the limit" in failure["reason"]
    catalog = runtime.catalog
    archive = catalog.find("s", "reports.zip")
    summary = catalog.find("s", "reports.zip#q3/summary.txt")
    assert archive is not None and summary is not None and summary.parent_id == archive.id
    assert summary.acl == archive.acl and summary.status == INDEXED

    # an edit of one member: that member (and the archive's list) re-embedded, no other
    members["notes.md"] = b"# Notes\n\nThe pelican budget was cut by the osprey committee."
    members["added.txt"] = b"A new capybara memo."
    _write(share / "reports.zip", zip_of(members))
    report = _sync(runtime)
    assert (report.new, report.changed, report.unchanged) == (1, 2, 2), report.to_dict()
    points = _points(runtime)
    assert "osprey" in points["reports.zip#notes.md"][0]["text"]
    assert points["reports.zip#notes.md"][0]["version"] == 2
    assert points["reports.zip#q3/summary.txt"][0]["version"] == 1  # never rewritten
    assert report.embedded == 3  # notes.md, added.txt, the archive's own list

    # a member removed from the archive is removed from the index
    del members["added.txt"]
    _write(share / "reports.zip", zip_of(members))
    report = _sync(runtime)
    assert report.deleted == 1 and "reports.zip#added.txt" not in _points(runtime)

    # the file's readers change: its members' payloads follow, nothing re-embedded
    (share / "mail" / "offer.msg").chmod(0o600)
    report = _sync(runtime)
    assert report.embedded == 0
    points = _points(runtime)
    assert points["mail/offer.msg#attachments/prices.txt"][0]["acl"] == (
        points["mail/offer.msg"][0]["acl"]
    )  # fmt: skip
    assert "everyone" not in points["mail/offer.msg#attachments/prices.txt"][0]["acl"]

    # the file moves: its members move with it, same documents, nothing re-embedded
    (share / "archive").mkdir()
    (share / "mail" / "offer.msg").rename(share / "archive" / "offer.msg")
    report = _sync(runtime)
    assert report.moved == 1 and report.embedded == 0, report.to_dict()
    points = _points(runtime)
    assert "archive/offer.msg#attachments/prices.txt" in points
    assert "mail/offer.msg#attachments/prices.txt" not in points
    moved = catalog.find("s", "archive/offer.msg#attachments/prices.txt")
    assert moved is not None and moved.status == INDEXED

    # the file is deleted: its members go with it
    (share / "mail" / "fwd.eml").unlink()
    report = _sync(runtime)
    assert report.deleted == 2
    assert not any(  # gone, or kept readable by nobody (their vectors, for a while)
        m["acl"] for p, metas in _points(runtime).items() if p.startswith("mail/fwd.eml")
        for m in metas
    )  # fmt: skip
    inner = catalog.find("s", "mail/fwd.eml#attachments/inner.eml")
    assert inner is not None and inner.status == DELETED


def test_a_failed_member_is_retried_through_its_file(runtime: Runtime, tmp_path: Path) -> None:
    share = tmp_path / "share"
    _write(share / "pack.zip", zip_of({
        "big.txt": b"albatross " * 6_000,  # 60 KB: over the 50 KB limit
        "small.txt": b"A small gannet note.",
    }))  # fmt: skip
    report = _sync(runtime)
    assert report.failed == 1
    big = runtime.catalog.find("s", "pack.zip#big.txt")
    assert big is not None and big.status == FAILED
    again = _sync(runtime)  # an unchanged file is not parsed again for its failed member
    assert again.unchanged == 1 and again.failed == 0
    runtime.settings.max_file_mb = 1.0  # the limit is raised, then `retry --failed`
    runtime.close()
    rt = open_runtime(runtime.settings)
    try:
        rt.catalog.reset_failed([big.id])
        report = rt.indexer.sync_paths("s", {"pack.zip#big.txt": time.time()})
        assert report.changed == 1 and report.new == 1, report.to_dict()  # the file, the member
        done = rt.catalog.find("s", "pack.zip#big.txt")
        assert done is not None and done.status == INDEXED
        assert "albatross" in _points(rt)["pack.zip#big.txt"][0]["text"]
        assert report.embedded < 10  # the small member was hashed, not embedded again
    finally:
        rt.close()


def test_sync_and_status_count_documents_by_format_and_name_what_is_not_read(
    runtime: Runtime, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    _write(share / "a.txt", b"A plain note about herons.")
    _write(share / "tools.zip", zip_of({"setup.exe": b"MZ\x90", "readme.md": b"# Readme\n\nHi."}))
    _write(share / "old.7z", b"7z\xbc\xaf\x27\x1c")
    report = _sync(runtime).to_dict()
    assert report["formats"] == {"txt": 1, "zip": 1, "md": 1}
    assert report["skipped_by_reason"] == {
        "unsupported file type (.exe): a program, not a document": 1,
        "unsupported file type (.7z): this archive format is not opened (zip and tar are)": 1,
    }
    status = status_report(runtime.catalog)
    assert status["formats"] == {
        "txt": {"indexed": 1}, "zip": {"indexed": 1}, "md": {"indexed": 1},
        ".exe": {"skipped": 1}, ".7z": {"skipped": 1},
    }  # fmt: skip
    assert sum(status["skipped_by_reason"].values()) == 2
    assert "by format:" in format_status(status) and "  .7z: 1 skipped" in format_status(status)


def test_a_staged_container_keeps_its_members_for_the_embed_step() -> None:
    """Distributed mode: the parse step stages the container, the embed step writes it and its
    members; what the embed step reads back is what the parse found."""
    from ingest.models import Chunk, Member, ParsedDocument, PreparedDocument, SourceFile
    from workers.distributed.dispatch import decode_staged, encode_prepared

    def doc(member: str, text: str) -> PreparedDocument:
        source = SourceFile("s", "/share", "m.eml", 10, 5, member=member)
        parsed = ParsedDocument("h-" + text, len(text), 5, (), "txt")
        return PreparedDocument(source, parsed, (Chunk(0, text, "text", (1,), None, ("text",), 3),))

    top = doc("", "the message")
    staged = PreparedDocument(
        SourceFile("s", "/share", "m.eml", 10, 5, known_members=(("a", "h"),)), top.parsed,
        top.chunks, members=(
            Member("attachments/a.txt", 4, "ha", doc("attachments/a.txt", "flamingo")),
            Member("attachments/b.exe", 2, "", error=("skipped", "unsupported file type (.exe)")),
            Member("attachments/c.txt", 3, "hc"),
        ),
    )  # fmt: skip
    back, changed_at = decode_staged(encode_prepared(staged, 12.5))
    assert changed_at == 12.5 and back.members == staged.members
    assert back.source.known_members == ()  # only the parse needed them
    assert back.chunks == staged.chunks and back.parsed.content_hash == top.parsed.content_hash
