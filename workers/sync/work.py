"""A document to (re)process, and a pass's plan: what the planner hands on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from index.catalog import DocumentRecord
from index.permissions.readers import Access
from ingest.models import SourceFile
from workers.sources.base import FileEntry, Source
from workers.sync.report import SyncReport


@dataclass
class WorkItem:
    """A document to (re)process: the file as it was stat'ed, who may read it, its record."""

    source: Source
    entry: FileEntry
    doc_id: str
    access: Access
    acl_note: str | None
    record: DocumentRecord | None
    kind: str  # "new" or "changed"
    #: wall-clock time of the change (the event, or the file's mtime)
    changed_at: float
    #: a member of a file (an attachment, an archive member): that file's path
    container: str | None = None
    #: documents waiting or in progress when this one was routed (freshness under load)
    backlog: int = 0

    @property
    def share(self) -> str:
        return self.source.name

    @property
    def file(self) -> SourceFile:
        """What a parse process needs to read it (picklable)."""
        e = self.entry
        return SourceFile(self.source.name, self.source.location, e.path, e.size, e.mtime_ns)

    def still_current(self, size: int, mtime_ns: int) -> bool:
        """The file is as it was when read (same size and mtime): its result may be written.
        For a member, the file it is in."""
        now = self.source.stat(self.container or self.entry.path)
        return now is not None and (now.size, now.mtime_ns) == (size, mtime_ns)


@dataclass
class Plan:
    """What a pass found: documents to process, and documents whose file is gone."""

    work: list[WorkItem] = field(default_factory=list)
    gone: list[DocumentRecord] = field(default_factory=list)
    #: files with a member waiting to be processed (their file is processed again)
    waiting: set[str] = field(default_factory=set)


#: where the planned documents go: processed here (embedded), or sent to the queue (distributed)
WorkSink = Callable[[list[WorkItem], SyncReport, str], None]
