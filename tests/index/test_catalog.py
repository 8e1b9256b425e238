"""One contract suite, run against SQLite and against the local PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from index.catalog import (
    DELETED,
    FAILED,
    INDEXED,
    PENDING,
    SKIPPED,
    Catalog,
    CatalogError,
    SqlCatalog,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        cat = SqlCatalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    else:
        cat = SqlCatalog(request.getfixturevalue("postgres_url"))
        with cat.session() as s:  # one database for the session: start each test empty
            s.execute(text("DELETE FROM document_versions"))
            s.execute(text("DELETE FROM documents"))
    yield cat
    cat.close()


def test_a_seen_document_is_pending_with_its_stat_and_acl(catalog: Catalog) -> None:
    catalog.upsert_seen("d1", "docs", "a/b.txt", 10, 123, ["user:alice", "everyone"])
    rec = catalog.find("docs", "a/b.txt")
    assert rec is not None
    assert (rec.id, rec.size, rec.mtime_ns, rec.status, rec.version) == ("d1", 10, 123, PENDING, 0)
    assert rec.acl == ["user:alice", "everyone"]
    assert catalog.documents("docs") == {"a/b.txt": rec}
    assert catalog.documents("other") == {}


def test_indexing_records_version_history(catalog: Catalog) -> None:
    catalog.upsert_seen("d1", "docs", "x.md", 10, 1, [])
    catalog.mark_indexed("d1", 1, "h1", 10, 3, "md")
    catalog.upsert_seen("d1", "docs", "x.md", 12, 2, [])
    catalog.mark_indexed("d1", 2, "h2", 12, 4, "md")
    rec = catalog.get("d1")
    assert rec is not None
    assert (rec.status, rec.version, rec.content_hash, rec.chunk_count) == (INDEXED, 2, "h2", 4)
    assert rec.indexed_at is not None
    assert [(v.version, v.content_hash, v.chunk_count) for v in catalog.versions("d1")] == [
        (1, "h1", 3),
        (2, "h2", 4),
    ]
    catalog.mark_indexed("d1", 2, "h2", 12, 4, "md")  # idempotent: no duplicate history row
    assert len(catalog.versions("d1")) == 2


def test_failure_keeps_the_indexed_version_and_records_the_reason(catalog: Catalog) -> None:
    catalog.upsert_seen("d1", "docs", "x.pdf", 10, 1, [])
    catalog.mark_indexed("d1", 1, "h1", 10, 3, "pdf")
    catalog.upsert_seen("d1", "docs", "x.pdf", 11, 2, [])
    catalog.mark_failed("d1", FAILED, "password-protected PDF")
    rec = catalog.get("d1")
    assert rec is not None
    assert (rec.status, rec.error, rec.version, rec.content_hash, rec.attempts) == (
        FAILED, "password-protected PDF", 1, "h1", 1,
    )  # fmt: skip
    assert [r.path for r in catalog.with_status(FAILED)] == ["x.pdf"]


def test_counts_cover_every_status(catalog: Catalog) -> None:
    for i, status in enumerate([INDEXED, INDEXED, FAILED, SKIPPED]):
        catalog.upsert_seen(f"d{i}", "docs", f"{i}.txt", 1, 1, [])
        if status == INDEXED:
            catalog.mark_indexed(f"d{i}", 1, "h", 1, 1, "txt")
        else:
            catalog.mark_failed(f"d{i}", status, "why")
    catalog.upsert_seen("d9", "docs", "9.txt", 1, 1, [])
    catalog.mark_deleted(["d0"])
    assert catalog.counts() == {PENDING: 1, INDEXED: 1, FAILED: 1, SKIPPED: 1, DELETED: 1}


def test_deleted_documents_stay_as_tombstones(catalog: Catalog) -> None:
    catalog.upsert_seen("d1", "docs", "gone.txt", 1, 1, ["everyone"])
    catalog.mark_indexed("d1", 1, "h", 1, 2, "txt")
    catalog.mark_deleted(["d1"])
    rec = catalog.find("docs", "gone.txt")
    assert rec is not None and rec.status == DELETED and rec.version == 1
    assert len(catalog.versions("d1")) == 1


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot open the catalog"):
        SqlCatalog("postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(CatalogError, match=r"\*\*\*@127.0.0.1:1") as info:
        SqlCatalog("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(info.value)


def test_version_numbers_for_different_content_never_repeat(catalog: Catalog) -> None:
    catalog.upsert_seen("d1", "docs", "x.md", 10, 1, [])
    first = catalog.allocate_version("d1", "h1")
    assert first == 1
    assert catalog.allocate_version("d1", "h1") == 1  # a redo of the same unclaimed content
    assert catalog.allocate_version("d1", "h2") == 2  # other content: a new number
    assert catalog.allocate_version("d1", "h1") == 3  # and back: never a number given to h2
    assert catalog.claim_version("d1", 3, "h1")
    assert not catalog.claim_version("d1", 2, "h2")  # compare-and-set: older than the claimed one
    assert catalog.allocate_version("d1", "h2") == 4  # other content never gets a claimed number
    assert catalog.allocate_version("d1", "h1") == 5  # nor one handed out for other content


def test_two_writers_of_the_same_bytes_write_one_version(catalog: Catalog) -> None:
    """A second writer of the claimed content (a document dispatched twice) that allocates
    after the first one claimed gets the claimed number back: the same point ids, one version in
    the history; once a newer number is out, the same bytes get a fresh one."""
    catalog.upsert_seen("d1", "docs", "x.md", 10, 1, [])
    assert catalog.allocate_version("d1", "h1") == 1  # writer A
    assert catalog.claim_version("d1", 1, "h1")
    assert catalog.allocate_version("d1", "h1") == 1  # writer B, same bytes, after A's claim
    assert catalog.claim_version("d1", 1, "h1")
    catalog.finish_version("d1", 1, "h1", 10, 1, "md")
    catalog.finish_version("d1", 1, "h1", 10, 1, "md")
    assert [v.version for v in catalog.versions("d1")] == [1]
    assert catalog.allocate_version("d1", "h2") == 2  # an edit
    assert catalog.allocate_version("d1", "h1") == 3  # the old bytes again, with 2 outstanding


def test_only_the_first_number_of_a_new_document_needs_no_clean_up(catalog: Catalog) -> None:
    """A new document's first version is the only one that can have points: its commit skips
    the scan for other versions; any other number (an edit, a concurrent writer) does not."""
    catalog.upsert_seen("d1", "docs", "x.md", 10, 1, [])
    assert catalog.allocate_version("d1", "h1") == 1
    assert catalog.only_version("d1", 1)
    assert catalog.allocate_version("d1", "h2") == 2  # a second writer took a number
    assert not catalog.only_version("d1", 1) and not catalog.only_version("d1", 2)


def test_caption_counts_and_captions_due(catalog: Catalog) -> None:
    for doc in ("a", "b", "c"):
        catalog.upsert_seen(doc, "docs", f"{doc}.pdf", 10, 1, [])
        catalog.mark_indexed(doc, 1, "h", 10, 2, "pdf")
    catalog.set_captions("a", "pending")
    catalog.set_captions("b", "pending")
    catalog.set_captions("c", "off")
    assert catalog.caption_counts() == {"pending": 2, "off": 1}
    assert {r.id for r in catalog.captions_due(-60)} == {"a", "b"}
    assert catalog.captions_due(3600) == []


def test_freshness_samples_stay_bounded(catalog: Catalog) -> None:
    for i in range(12):
        catalog.record_freshness("docs", "new", float(i))
    catalog.prune_freshness(keep=5)
    fresh = catalog.freshness()
    assert fresh["samples"] == 5 and fresh["last_s"] == 11.0 and fresh["p50_s"] == 9.0


def test_status_lists_documents_whose_permissions_could_not_be_read(catalog: Catalog) -> None:
    from workers.status import format_status, status_report

    catalog.upsert_seen(
        "d1",
        "docs",
        "x.md",
        1,
        1,
        [],
        [],
        "cannot read the POSIX ACL: Input/output error; readable by nobody",
    )
    catalog.upsert_seen("d2", "docs", "y.md", 1, 1, ["everyone"])
    report = status_report(catalog)
    assert [(d["path"], d["reason"]) for d in report["acl_unreadable"]] == [
        ("x.md", "cannot read the POSIX ACL: Input/output error; readable by nobody")
    ]
    assert "docs:x.md: cannot read the POSIX ACL" in format_status(report)


def test_processes_opening_a_new_catalog_together_do_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes starting on a new data dir race to create the tables; the one whose CREATE
    comes second gets "table ... already exists" from SQLite, and must look again, not fail."""
    from sqlalchemy import MetaData
    from sqlalchemy.exc import OperationalError

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    create_all = MetaData.create_all
    raced: list[bool] = []

    def loses_the_race(self: MetaData, bind: object, *args: object, **kwargs: object) -> None:
        if not raced:  # the other process creates the tables between our check and our CREATE
            raced.append(True)
            other = f"from index.catalog import SqlCatalog; SqlCatalog({url!r}).close()"
            subprocess.run([sys.executable, "-c", other], check=True, timeout=120)
            raise OperationalError(
                "CREATE TABLE documents", {}, Exception("table documents already exists")
            )
        create_all(self, bind, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MetaData, "create_all", loses_the_race)
    catalog = SqlCatalog(url)
    catalog.upsert_seen("d1", "docs", "a.txt", 1, 1, [])
    assert raced and catalog.find("docs", "a.txt") is not None
    catalog.close()

    def broken(self: MetaData, bind: object, *args: object, **kwargs: object) -> None:
        raise OperationalError("CREATE TABLE documents", {}, Exception("disk I/O error"))

    monkeypatch.setattr(MetaData, "create_all", broken)
    with pytest.raises(CatalogError, match="disk I/O error"):
        SqlCatalog(f"sqlite:///{tmp_path / 'other.db'}")


def test_a_live_lease_refuses_a_second_take(catalog: Catalog) -> None:
    """One live holder per document: a second take of the same dispatch (a document taken
    along with another's batch whose own message arrives, a message delivered twice) is
    refused, by the same worker process too, until the holder hands it on or its lease lapses."""
    catalog.upsert_seen("d1", "docs", "x.md", 10, 1, [])
    token = catalog.dispatch("d1", 60)
    assert token is not None
    assert catalog.take("d1", token, "w1", 30) is not None
    assert catalog.take("d1", token, "w1", 30) is None
    assert catalog.take("d1", token, "w2", 30) is None
    assert catalog.release("d1", token, 60)  # parsed: handed on to the embed queue
    assert catalog.take("d1", token, "w2", -1) is not None  # a lease already lapsed ...
    assert catalog.take("d1", token, "w3", 30) is not None  # ... is no lease (w2 died)
    assert catalog.take("d1", "stale-token", "w4", 30) is None


def test_a_new_document_never_takes_the_id_of_one_renamed_away_from_its_path(
    catalog: Catalog,
) -> None:
    from index.schema import document_id

    first = catalog.new_id("docs", "report.docx")
    assert first == document_id("docs", "report.docx")  # derived from where it is first seen
    catalog.upsert_seen(first, "docs", "report.docx", 10, 1, [])
    assert catalog.new_id("docs", "report.docx") == first  # the same file: the same id
    catalog.repoint(first, "report-old.docx", 10, 1, [], [])  # renamed away
    second = catalog.new_id("docs", "report.docx")  # a new file under the old name
    assert second != first
    assert catalog.new_id("docs", "report.docx") == second  # two planners agree
    catalog.upsert_seen(second, "docs", "report.docx", 12, 2, [])
    assert {p: r.id for p, r in catalog.documents("docs").items()} == {
        "report-old.docx": first, "report.docx": second,
    }  # fmt: skip


def test_the_error_of_a_late_reader_does_not_bring_a_deleted_document_back(
    catalog: Catalog,
) -> None:
    """One lane read the file as it vanished (a transient error: pending) after the planner
    had deleted the document: it stays deleted (found by the chaos soak: a ghost pending
    document until the next reconcile)."""
    catalog.upsert_seen("d1", "docs", "a.txt", 1, 1, [])
    catalog.mark_deleted(["d1"])
    catalog.mark_failed("d1", "pending", "the file disappeared before it could be read")
    assert catalog.get("d1").status == "deleted"  # type: ignore[union-attr]
    catalog.upsert_seen("d2", "docs", "b.txt", 1, 1, [])
    catalog.mark_failed("d2", "failed", "not a PDF")
    d2 = catalog.get("d2")
    assert d2 is not None and (d2.status, d2.error, d2.attempts) == ("failed", "not a PDF", 1)
