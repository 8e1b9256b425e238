"""Committing one processed document: its new version through the versioned writer
(``index.writer``), and what became of it in the catalog (an error recorded with its reason)."""

from __future__ import annotations

from index.catalog import PENDING
from index.writer import DocumentVersion, VersionedWriter
from ingest.errors import IngestError, TransientError
from ingest.models import EmbeddedChunk, PreparedDocument
from workers.sync.outcomes import Outcomes
from workers.sync.report import SyncReport
from workers.sync.work import WorkItem


class DocumentCommitter:
    def __init__(self, writer: VersionedWriter, outcomes: Outcomes) -> None:
        self.writer = writer
        self.outcomes = outcomes

    def write(self, item: WorkItem, doc: PreparedDocument, chunks: list[EmbeddedChunk]) -> bool:
        """Commit one document; False when its result is stale and was dropped."""
        parsed = doc.parsed
        allow, deny = item.access.as_lists()
        version = DocumentVersion(
            doc_id=item.doc_id, share=item.share, path=item.entry.path, acl=allow, acl_deny=deny,
            content_hash=parsed.content_hash, size=parsed.size, mtime_ns=parsed.mtime_ns,
            filetype=parsed.filetype, chunks=chunks,
        )  # fmt: skip
        read = doc.source if doc.source.member else parsed  # a member: the file it was read from
        return self.writer.commit(version, lambda: item.still_current(read.size, read.mtime_ns))

    def error(self, item: WorkItem, error: IngestError, report: SyncReport) -> None:
        """Bad input failed (its status, its reason); an outage leaves it pending."""
        status = PENDING if isinstance(error, TransientError) else error.status
        self.outcomes.error(item.doc_id, item.share, item.entry.path, status, str(error), report)

    def write_failed(self, item: WorkItem, exc: Exception, report: SyncReport) -> None:
        """The store or the catalog failed: pending (retried later), nothing lost."""
        reason = f"could not write to the index: {type(exc).__name__}: {exc}"
        self.outcomes.error(item.doc_id, item.share, item.entry.path, PENDING, reason, report)
