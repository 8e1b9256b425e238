"""The small-documents pass: three things at once. The parse processes read the next documents
(a window of them in flight), the embedding thread runs the model on one batch (across
documents, reusing what the index already has for the same text), and this thread writes the
batch before it through the versioned writer, then adds its figures' captions. Bad input costs
its document only: the error is recorded with its reason."""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ingest.errors import IngestError
from ingest.models import EmbeddedChunk, PreparedDocument
from ingest.pipeline import EmbeddingPlan
from workers.sync.captions import CaptionPass
from workers.sync.commit import DocumentCommitter
from workers.sync.embedding import Pairs, ReusingEmbedder, count_reused
from workers.sync.members import MemberBook
from workers.sync.outcomes import Outcomes
from workers.sync.parsepool import Parser
from workers.sync.report import Progress, SyncReport
from workers.sync.work import WorkItem

log = logging.getLogger(__name__)

#: parse results waiting in flight while the main thread embeds
WINDOW = 64
#: embed once this many chunks are ready (cross-document batches)
FLUSH_CHUNKS = 256


@dataclass
class _Batch:
    """Documents whose vectors the model is computing (on the embedding thread)."""

    ready: Pairs
    plan: EmbeddingPlan
    vectors: Future[Any]


class SmallBatches:
    def __init__(
        self, pool: Parser | None, members: MemberBook, embedding: ReusingEmbedder,
        committer: DocumentCommitter, captions: CaptionPass, outcomes: Outcomes,
        stop: threading.Event, *, contain_write_errors: bool = True,
        flush_chunks: int = FLUSH_CHUNKS,
    ) -> None:  # fmt: skip
        self.pool = pool
        self.members = members
        self.embedding = embedding
        self.committer = committer
        self.captions = captions
        self.outcomes = outcomes
        #: set: stop after the current write (the rest stays pending in the catalog)
        self.stop = stop
        #: True: a failed write is recorded and left pending; False: raised (Celery retries)
        self.contain_write_errors = contain_write_errors
        self.flush_chunks = flush_chunks

    def process(self, work: list[WorkItem], report: SyncReport, bar: Progress) -> None:
        pool = self.pool
        assert pool is not None, "this indexer has no parse pool"
        todo = deque(work)
        inflight: deque[tuple[WorkItem, Future[PreparedDocument]]] = deque()
        ready: Pairs = []
        ready_chunks = 0
        embedding: _Batch | None = None
        model = ThreadPoolExecutor(1, thread_name_prefix="embed")

        def flush() -> None:
            nonlocal embedding, ready, ready_chunks
            plan, vectors = self.embedding.start([d for _, d in ready],
                                                 self.embedding.lookup(ready), model)  # fmt: skip
            batch = _Batch(ready, plan, vectors)
            ready, ready_chunks = [], 0
            if embedding is not None:
                self._finish(embedding, report, bar)
            embedding = batch

        try:
            while (todo or inflight) and not self.stop.is_set():
                while todo and len(inflight) < WINDOW:
                    item = todo.popleft()
                    inflight.append((item, pool.submit(self.members.source_file(item))))
                self.embedding.warm_up()  # loads once, while the parse processes start and work
                item, future = inflight.popleft()
                outcome = pool.outcome(future)
                if isinstance(outcome, IngestError):
                    self.committer.error(item, outcome, report)
                    bar.update(1)
                    continue
                for pair in self.members.expand(item, outcome, report):  # a file, its members
                    ready.append(pair)
                    ready_chunks += len(pair[1].chunks)
                if ready_chunks >= self.flush_chunks or not (todo or inflight):
                    flush()
            if ready:  # stopping: finish what is parsed, leave the rest pending in the catalog
                flush()
            if embedding is not None:
                self._finish(embedding, report, bar)
        finally:
            for _, future in inflight:
                future.cancel()
            model.shutdown(wait=True)  # an error here: the batch in the model is left pending

    def _finish(self, batch: _Batch, report: SyncReport, bar: Progress) -> None:
        results = self.embedding.finish(batch.plan, batch.vectors.result(), report)
        self.write(batch.ready, results, report)
        bar.update(sum(1 for item, _ in batch.ready if item.container is None))  # files, not members

    def commit_many(self, ready: Pairs, report: SyncReport) -> None:
        """Embed parsed documents (batches across them) and write each, on this thread (the
        distributed mode's embed step)."""
        ready = [pair for item, doc in ready for pair in self.members.expand(item, doc, report)]
        docs = [doc for _, doc in ready]
        self.write(ready, self.embedding.embed(docs, self.embedding.lookup(ready), report), report)

    def write(self, ready: Pairs, results: list[list[EmbeddedChunk]], report: SyncReport) -> None:
        """Commit each document of a batch; then, the batch's text searchable, the captions."""
        committed: Pairs = []
        for (item, doc), chunks in zip(ready, results, strict=True):
            try:
                written = self.committer.write(item, doc, chunks)
            except Exception as exc:  # the store or the catalog failed: retry later, lose nothing
                if not self.contain_write_errors:
                    raise  # the task retries; what this batch committed keeps captions=pending
                log.exception("writing %s/%s failed", item.share, item.entry.path)
                self.committer.write_failed(item, exc, report)
                continue
            if not written:
                report.superseded += 1
                continue
            self.captions.mark(item, doc)
            count_reused(chunks, report)
            report.count(item.kind)
            report.formats[doc.parsed.filetype] += 1
            if item.container is None:  # a file's change, timed once (not per member)
                self.outcomes.searchable(item.share, item.kind, item.changed_at, item.backlog)
            committed.append((item, doc))
        for item, doc in committed:
            self.captions.run(item, doc, report)
