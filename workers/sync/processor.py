"""The second half of a pass: parse, embed and write the planned documents, in three passes a
reader can name, around one embed-with-reuse service (``embedding``):

- ``batches.SmallBatches``: small documents, parsed a window ahead, embedded in batches across
  documents on the model's thread while the batch before is written;
- ``slices.LargeDocuments``: a document of ``large_bytes`` and up, parsed in parts and written
  in slices (readers keep its old version until the new one is complete); after the small ones;
- ``captions.CaptionPass``: figures captioned after their document's text is searchable.

Each is built complete by the composition root (``workers.runtime``); this is where a pass's
planned documents enter them.
"""

from __future__ import annotations

import threading

from ingest.errors import IngestError
from ingest.models import PreparedDocument
from ingest.stages.members import is_container
from workers.sync.batches import SmallBatches
from workers.sync.commit import DocumentCommitter
from workers.sync.embedding import Pairs
from workers.sync.members import MemberBook
from workers.sync.parsepool import Parser
from workers.sync.report import ProgressFactory, SyncReport, no_progress
from workers.sync.slices import LargeDocuments
from workers.sync.work import WorkItem

#: default of the large-document threshold (setting large_document_mb)
LARGE_BYTES = 1 << 20


class DocumentProcessor:
    def __init__(
        self, small: SmallBatches, large: LargeDocuments, committer: DocumentCommitter,
        members: MemberBook, pool: Parser | None, stop: threading.Event, *,
        large_bytes: int = LARGE_BYTES, progress: ProgressFactory = no_progress,
    ) -> None:  # fmt: skip
        self.small = small
        self.large = large
        self.committer = committer
        self.members = members
        self.pool = pool
        #: set: stop after the current write (the rest stays pending in the catalog); shared by
        #: the passes
        self.stop = stop
        self.large_bytes = large_bytes
        self.progress = progress

    def is_large(self, item: WorkItem) -> bool:
        """Written in slices: a large file (a message or an archive is one parse of its
        members, each written whole)."""
        return item.entry.size >= self.large_bytes and not is_container(item.entry.path)

    def process(self, work: list[WorkItem], report: SyncReport, share: str) -> None:
        """The small documents first (they are searchable first), then each large one."""
        if not work:
            return
        bar = self.progress(len(work), share)
        large = [item for item in work if self.is_large(item)]
        try:
            self.small.process([i for i in work if not self.is_large(i)], report, bar)
            for item in large:
                if self.stop.is_set():
                    break
                self.large.process(item, report, bar)
                bar.update(1)
        finally:
            bar.close()

    # -- the distributed mode's steps -------------------------------------------------------
    def parse(self, item: WorkItem) -> PreparedDocument | IngestError:
        """Parse and chunk in the parse pool (memory and time limits); an error is returned."""
        assert self.pool is not None, "this indexer has no parse pool"
        return self.pool.outcome(self.pool.submit(self.members.source_file(item)))

    def commit_many(self, ready: Pairs, report: SyncReport) -> None:
        """Embed parsed documents in batches across them, and write each (on this thread)."""
        self.small.commit_many(ready, report)

    def process_large(self, item: WorkItem, report: SyncReport) -> None:
        self.large.process(item, report)

    def record_error(self, item: WorkItem, error: IngestError, report: SyncReport) -> None:
        self.committer.error(item, error, report)
