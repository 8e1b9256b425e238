"""Brings the index of a share in line with the share: the engine behind sync, run and watch.

A pass is the planner (``planner``: what changed, and the cheap changes: permissions, moves,
deletes) and a sink for the documents to (re)process: the document processor (``processor``:
parse, embed, write through ``index.writer``) in the embedded mode, the queue in the distributed
mode. The composition root (``workers.runtime``) builds it complete for either.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from index.catalog import DocumentRecord
from workers.sources.base import Source
from workers.sync.planner import Planner
from workers.sync.processor import DocumentProcessor
from workers.sync.report import SyncReport
from workers.sync.work import WorkItem


class Indexer:
    def __init__(
        self,
        sources: Mapping[str, Source],
        planner: Planner,
        processor: DocumentProcessor | None,
    ) -> None:
        self.sources = dict(sources)
        self.planner = planner
        #: None in a process that only plans (a watcher never opens the index)
        self.processor = processor

    @property
    def stop(self) -> threading.Event:
        """Set: the processor stops after its current write (the rest stays pending)."""
        return self.processor.stop if self.processor else threading.Event()

    def source(self, share: str) -> Source:
        try:
            return self.sources[share]
        except KeyError:
            raise KeyError(f"share {share!r} is not configured") from None

    def sync_share(self, share: str) -> SyncReport:
        """Reconcile a whole share with the catalog and the index."""
        return self.planner.sync_share(self.source(share))

    def sync_paths(self, share: str, changes: Mapping[str, float]) -> SyncReport:
        """Bring the paths of watcher events up to date; ``changes`` maps path -> event time."""
        return self.planner.sync_paths(self.source(share), changes)

    def work_item(self, record: DocumentRecord, changed_at: float) -> WorkItem | None:
        """A dispatched document as it is now (None: no longer a file)."""
        return self.planner.work_item(self.source(record.share), record, changed_at)
