"""The second half of a pass: parse, embed and write the planned documents.

Three things at once: the parse processes read the next documents, the embedding thread runs
the model on one batch (across documents, reusing the vectors a previous version already has for
the same text), and this thread writes the batch before it through the versioned writer
(``index.writer``). After a batch's text is committed, each document's figures are captioned
and OCR'd and the document is written again with them (same version; the text never waits for
the VLM). Bad input costs its document only: the error is recorded with its reason.

A large document (``large_bytes`` and up) is not one unit: a large text file is parsed in parts,
any large document is embedded and written in slices of ``slice_chunks`` (``index.writer``'s
``SlicedVersion``: readers keep the old version until the new one is complete), with ``pause``
called between slices (the embedded service's live lane goes first there) and its progress on
the ``WorkBoard``. Neither its chunks nor its vectors are ever all in memory at once.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from index.catalog import DELETED, PENDING, Catalog
from index.vectors import VectorIndex
from index.writer import DocumentVersion, SlicedVersion, VersionedWriter
from ingest.captions import FIGURE_FILETYPES, FigureCaptioner
from ingest.errors import EmptyDocument, FileChanged, IngestError, TransientError
from ingest.models import Chunk, EmbeddedChunk, PreparedDocument
from ingest.pipeline import EmbeddingPlan, ReuseLookup, plan_embedding, text_hash
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.members import is_container
from ingest.stages.parts import can_split, part_count
from ingest.stages.sparse import SparseEncoder
from workers import metrics
from workers.sync.board import WorkBoard
from workers.sync.members import MemberBook
from workers.sync.outcomes import Outcomes
from workers.sync.parsepool import Parser
from workers.sync.report import ProgressFactory, SyncReport, no_progress
from workers.sync.work import WorkItem

log = logging.getLogger(__name__)

#: parse results waiting in flight while the main thread embeds
_WINDOW = 64
#: embed once this many chunks are ready (cross-document batches)
_FLUSH_CHUNKS = 256
#: defaults of the large-document path (settings large_document_mb, part_mb, slice_chunks)
_LARGE_BYTES = 1 << 20
_PART_BYTES = 1 << 20
_SLICE_CHUNKS = 64


@dataclass
class _Batch:
    """Documents whose vectors the model is computing (on the embedding thread)."""

    ready: list[tuple[WorkItem, PreparedDocument]]
    plan: EmbeddingPlan
    vectors: Future[Any]


class DocumentProcessor:
    def __init__(
        self,
        catalog: Catalog,
        store: VectorIndex,
        embedder: SentenceEmbedder,
        pool: Parser | None,
        writer: VersionedWriter,
        *,
        sparse: SparseEncoder,
        figures: FigureCaptioner | None = None,
        progress: ProgressFactory = no_progress,
        contain_write_errors: bool = True,
        large_bytes: int = _LARGE_BYTES,
        part_bytes: int = _PART_BYTES,
        slice_chunks: int = _SLICE_CHUNKS,
        board: WorkBoard | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.embedder = embedder
        self.pool = pool
        self.writer = writer
        self.sparse = sparse
        #: captions and OCR of figures, added after the text is committed; None: both off
        self.figures = figures
        self.progress = progress
        #: True: a failed write is recorded and left pending; False: it is raised (Celery retries)
        self.contain_write_errors = contain_write_errors
        self.outcomes = Outcomes(catalog)
        self.members = MemberBook(catalog, store)
        #: embed once this many chunks are ready (cross-document batches)
        self.flush_chunks = _FLUSH_CHUNKS
        #: set to stop after the current write (the rest stays pending in the catalog)
        self.stop = threading.Event()
        #: a file this large is a large document: parsed in parts (text), written in slices
        self.large_bytes = large_bytes
        self.part_bytes = part_bytes
        self.slice_chunks = slice_chunks
        #: large documents in flight (status)
        self.board = board or WorkBoard()
        #: called between the slices of a large document (the service's live lane runs there)
        self.pause: Callable[[], None] = lambda: None

    def is_large(self, item: WorkItem) -> bool:
        """Written in slices: a large file (a message or an archive is one parse of its
        members, each written whole)."""
        return item.entry.size >= self.large_bytes and not is_container(item.entry.path)

    def parse(self, item: WorkItem) -> PreparedDocument | IngestError:
        """Parse and chunk in the parse pool (memory and time limits); an error is returned."""
        assert self.pool is not None, "this indexer has no parse pool"
        return self.pool.outcome(self.pool.submit(self.members.source_file(item)))

    def record_error(self, item: WorkItem, error: IngestError, report: SyncReport) -> None:
        status = PENDING if isinstance(error, TransientError) else error.status
        self.outcomes.error(item.doc_id, item.share, item.entry.path, status, str(error), report)

    def commit_many(
        self, ready: list[tuple[WorkItem, PreparedDocument]], report: SyncReport
    ) -> None:
        """Embed several documents in batches across them, and write each (on this thread)."""
        ready = [pair for item, doc in ready for pair in self.members.expand(item, doc, report)]
        results = self._embed_now([doc for _, doc in ready], self._reuse_lookup(ready), report)
        self._write_batch(ready, results, report)

    def process(self, work: list[WorkItem], report: SyncReport, share: str) -> None:
        """Three things at once: the parse processes read the next documents, the embedding
        thread runs the model on one batch, and this thread writes the batch before it (the
        model releases the GIL; writes and captions never wait for it, nor it for them)."""
        if not work:
            return
        pool = self.pool
        assert pool is not None, "this indexer has no parse pool"
        bar = self.progress(len(work), share)
        large = [item for item in work if self.is_large(item)]
        work = [item for item in work if not self.is_large(item)]
        try:
            self._process_small(work, report, bar)
            for item in large:  # after the small ones: they are searchable first
                if self.stop.is_set():
                    break
                self.process_large(item, report, bar)
                bar.update(1)
        finally:
            bar.close()

    def _process_small(self, work: list[WorkItem], report: SyncReport, bar: Any) -> None:
        pool = self.pool
        assert pool is not None
        todo = deque(work)
        inflight: deque[tuple[WorkItem, Future[PreparedDocument]]] = deque()
        ready: list[tuple[WorkItem, PreparedDocument]] = []
        ready_chunks = 0
        embedding: _Batch | None = None
        model = ThreadPoolExecutor(1, thread_name_prefix="embed")

        def flush() -> None:
            nonlocal embedding, ready, ready_chunks
            batch = self._start_batch(ready, model)
            ready, ready_chunks = [], 0
            if embedding is not None:
                self._finish_batch(embedding, report)
                bar.update(_files(embedding.ready))
            embedding = batch

        try:
            while (todo or inflight) and not self.stop.is_set():
                while todo and len(inflight) < _WINDOW:
                    item = todo.popleft()
                    inflight.append((item, pool.submit(self.members.source_file(item))))
                self.embedder.warm_up()  # loads once, while the parse processes start and work
                item, future = inflight.popleft()
                outcome = pool.outcome(future)
                if isinstance(outcome, IngestError):
                    self.record_error(item, outcome, report)
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
                self._finish_batch(embedding, report)
                bar.update(_files(embedding.ready))
        finally:
            for _, future in inflight:
                future.cancel()
            model.shutdown(wait=True)  # an error here: the batch in the model is left pending

    # -- a large document, in parts and slices ---------------------------------------------
    def process_large(self, item: WorkItem, report: SyncReport, bar: Any = None) -> None:
        """Parse (in parts, for text), embed and write one large document slice by slice; an
        error costs this document only (its slices are removed; the old version stays)."""
        entry = item.entry
        self.board.start(item.doc_id, item.share, entry.path, entry.size)
        parts = self._parts(item)
        try:
            self._write_slices(item, parts, report, bar)
        except IngestError as exc:
            self.record_error(item, exc, report)
        except Exception as exc:  # the store or the catalog failed: retry later, lose nothing
            if not self.contain_write_errors:
                raise
            log.exception("writing %s/%s failed", item.share, entry.path)
            reason = f"could not write to the index: {type(exc).__name__}: {exc}"
            self.outcomes.error(item.doc_id, item.share, entry.path, PENDING, reason, report)
        finally:
            parts.close()
            self.board.finish(item.doc_id)

    def _parts(self, item: WorkItem) -> _Parts:
        source = self.members.source_file(item)
        if not can_split(item.entry.path):
            return _Parts(self, [source])
        count = part_count(item.entry.size, self.part_bytes)
        return _Parts(
            self, [replace(source, part=k, part_bytes=self.part_bytes) for k in range(count)]
        )

    def _write_slices(self, item: WorkItem, parts: _Parts, report: SyncReport, bar: Any) -> None:
        entry = item.entry
        old_id, old = item.doc_id, 0
        known: dict[str, int] = {}
        sliced: SlicedVersion | None = None
        done = 0
        content_hash = ""
        read_size, read_mtime = entry.size, entry.mtime_ns
        try:
            for doc, last in parts:
                if sliced is None:
                    parsed = doc.parsed
                    content_hash, read_size, read_mtime = (
                        parsed.content_hash,
                        parsed.size,
                        parsed.mtime_ns,
                    )
                    previous = self._previous(item, content_hash)
                    if previous is not None:
                        old_id, old = previous
                        known = self.store.stored_hashes(old_id, old)
                    allow, deny = item.access.as_lists()
                    sliced = self.writer.begin(DocumentVersion(
                        doc_id=item.doc_id, share=item.share, path=entry.path, acl=allow,
                        acl_deny=deny, content_hash=content_hash, size=parsed.size,
                        mtime_ns=parsed.mtime_ns, filetype=parsed.filetype, chunks=(),
                    ))  # fmt: skip
                if (doc.parsed.size, doc.parsed.mtime_ns) != (read_size, read_mtime):
                    sliced.abandon()  # this part read the file after it changed
                    report.superseded += 1
                    return
                chunks = [replace(c, index=done + i) for i, c in enumerate(doc.chunks)]
                for start in range(0, len(chunks), self.slice_chunks):
                    self.pause()
                    if self.stop.is_set() or not item.still_current(read_size, read_mtime):
                        sliced.abandon()  # stopping, or the file changed: its change comes
                        report.superseded += not self.stop.is_set()
                        return
                    piece = chunks[start : start + self.slice_chunks]
                    final = last and start + self.slice_chunks >= len(chunks)
                    sliced.add(self._embed_slice(old_id, old, known, piece, report), final)
                    self._advance(item, parts, done + start + len(piece), bar)
                done += len(chunks)
            if sliced is None or done == 0:
                raise EmptyDocument("no text found in the document")
            current = self.catalog.get(item.doc_id)  # a permission change meanwhile holds
            acl = (current.acl, current.acl_deny) if current else item.access.as_lists()
            if not sliced.finish(
                content_hash, acl, lambda: item.still_current(read_size, read_mtime)
            ):
                report.superseded += 1
                return
        except BaseException:
            if sliced is not None:
                sliced.abandon()
            raise
        report.count(item.kind)
        report.formats[sliced.doc.filetype] += 1
        self.outcomes.searchable(item.share, item.kind, item.changed_at, item.backlog)

    def _advance(self, item: WorkItem, parts: _Parts, done: int, bar: Any) -> None:
        total, estimated = parts.estimate(done)
        self.board.advance(item.doc_id, done, total, estimated)
        postfix = getattr(bar, "set_postfix_str", None)
        if postfix is not None:
            postfix(self.board.line(item.doc_id), refresh=False)

    def _embed_slice(
        self, doc_id: str, old: int, known: dict[str, int], chunks: Sequence[Chunk],
        report: SyncReport,
    ) -> list[EmbeddedChunk]:  # fmt: skip
        """One slice's vectors: those the old version has for the same text are fetched (only
        those), the rest embedded."""
        wanted = sorted({known[h] for h in (text_hash(c.text) for c in chunks) if h in known})

        def reuse(_: PreparedDocument) -> Any:
            return self.store.stored_vectors(doc_id, old, wanted) if wanted else {}

        piece = PreparedDocument(source=None, parsed=None, chunks=tuple(chunks))  # type: ignore[arg-type]
        [embedded] = self._embed_now([piece], reuse, report)
        reused = sum(1 for c in embedded if c.reused)
        report.reused += reused
        metrics.REUSED.inc(reused)
        return embedded

    def _reuse_lookup(self, ready: list[tuple[WorkItem, PreparedDocument]]) -> ReuseLookup:
        """Vectors a previous version of each document already has, by text hash."""
        by_doc = {id(doc): item for item, doc in ready}

        def reuse(doc: PreparedDocument) -> Any:
            previous = self._previous(by_doc[id(doc)], doc.parsed.content_hash)
            return self.store.stored_vectors(*previous) if previous else {}

        return reuse

    def _previous(self, item: WorkItem, content_hash: str) -> tuple[str, int] | None:
        """The stored version whose vectors this document may reuse: its own previous one (of
        a deleted document too, while its points are kept), else a deleted document's of the
        same content, kept (the file came back under another path)."""
        record = item.record
        if record is not None and record.version and (record.status != DELETED or record.kept):
            return record.id, record.version
        twin = self.catalog.kept_twin(content_hash) if content_hash else None
        return (twin.id, twin.version) if twin is not None else None

    def _start_batch(
        self, ready: list[tuple[WorkItem, PreparedDocument]], model: ThreadPoolExecutor
    ) -> _Batch:
        """Plan here (the index is read on this thread only), run the model on its thread."""
        plan = plan_embedding([doc for _, doc in ready], self._reuse_lookup(ready))
        return _Batch(ready, plan, model.submit(self.embedder.embed_documents, plan.texts))

    def _finish_batch(self, batch: _Batch, report: SyncReport) -> None:
        results = batch.plan.assemble(batch.vectors.result(), self.sparse)
        self._count_embedded(batch.plan, report)
        self._write_batch(batch.ready, results, report)

    def _count_embedded(self, plan: EmbeddingPlan, report: SyncReport) -> None:
        report.embedded += len(plan.todo)
        metrics.EMBEDDINGS.inc(len(plan.todo))

    def _embed_now(
        self, docs: list[PreparedDocument], reuse: ReuseLookup, report: SyncReport
    ) -> list[list[EmbeddedChunk]]:
        """Embed on this thread (the Celery path, captions): plan, run the model, assemble."""
        plan = plan_embedding(docs, reuse)
        results = plan.assemble(self.embedder.embed_documents(plan.texts), self.sparse)
        self._count_embedded(plan, report)
        return results

    def _write_batch(
        self,
        ready: list[tuple[WorkItem, PreparedDocument]],
        results: list[list[EmbeddedChunk]],
        report: SyncReport,
    ) -> None:
        committed: list[tuple[WorkItem, PreparedDocument]] = []
        for (item, doc), chunks in zip(ready, results, strict=True):
            try:
                written = self._write(item, doc, chunks)
            except Exception as exc:  # the store or the catalog failed: retry later, lose nothing
                if not self.contain_write_errors:
                    raise  # the task retries; what this batch committed keeps captions=pending
                log.exception("writing %s/%s failed", item.share, item.entry.path)
                reason = f"could not write to the index: {type(exc).__name__}: {exc}"
                self.outcomes.error(
                    item.doc_id, item.share, item.entry.path, PENDING, reason, report
                )
                continue
            if not written:
                report.superseded += 1
                continue
            if self._has_figures(doc):
                # durable before the captions run: a failure from here has them redone later
                self.catalog.set_captions(item.doc_id, "pending" if self.figures else "off")
            reused = sum(1 for c in chunks if c.reused)
            report.reused += reused
            metrics.REUSED.inc(reused)
            report.count(item.kind)
            report.formats[doc.parsed.filetype] += 1
            if item.container is None:  # a file's change, timed once (not per member)
                self.outcomes.searchable(item.share, item.kind, item.changed_at, item.backlog)
            committed.append((item, doc))
        for item, doc in committed:  # the text of the whole batch is searchable: now the figures
            self._add_captions(item, doc, report)

    @staticmethod
    def _has_figures(doc: PreparedDocument) -> bool:
        return doc.parsed.filetype in FIGURE_FILETYPES

    def _add_captions(self, item: WorkItem, doc: PreparedDocument, report: SyncReport) -> None:
        """Write the document again with its figures' captions appended (same version); the
        document is marked captions=pending (or off) already."""
        if self.figures is None or not self._has_figures(doc):
            return
        status: str
        try:
            captions, status = self.figures.run(doc)
            if captions:
                full = PreparedDocument(doc.source, doc.parsed, doc.chunks + tuple(captions))
                current = self.catalog.get(item.doc_id)

                def reuse(_: PreparedDocument) -> Any:
                    version = current.version if current else 0
                    return self.store.stored_vectors(item.doc_id, version) if version else {}

                [embedded] = self._embed_now([full], reuse, report)
                if not self._write(item, full, embedded):
                    return  # the file moved on: its newer version gets the captions
        except FileChanged:
            return
        except IngestError as exc:
            log.warning("figures of %s/%s: %s", item.share, item.entry.path, exc)
            status = "pending" if isinstance(exc, TransientError) else "failed"
        except Exception:
            if not self.contain_write_errors:
                raise
            log.exception("captions of %s/%s not written", item.share, item.entry.path)
            return
        if doc.parsed.vlm_pending and status != "failed":
            status = "pending"  # pages the VLM could not read yet: read again when it is back
        self.catalog.set_captions(item.doc_id, status)

    def _write(self, item: WorkItem, doc: PreparedDocument, chunks: list[EmbeddedChunk]) -> bool:
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


def _files(ready: list[tuple[WorkItem, PreparedDocument]]) -> int:
    """How many of the planned files a batch finishes (their members are not counted)."""
    return sum(1 for item, _ in ready if item.container is None)


class _Parts:
    """The parts of a large document, parsed one ahead of the one being embedded; iterating
    gives (part, is it the last)."""

    def __init__(self, processor: DocumentProcessor, sources: list[Any]) -> None:
        self.processor = processor
        self.sources = sources
        self.futures: deque[Future[PreparedDocument]] = deque()
        self.next = 0
        self.read = 0  # parts read
        self.chunks = 0  # their chunks

    def _submit(self) -> None:
        pool = self.processor.pool
        assert pool is not None, "this indexer has no parse pool"
        while self.next < len(self.sources) and len(self.futures) < 2:
            self.futures.append(pool.submit(self.sources[self.next]))
            self.next += 1

    def __iter__(self) -> Iterator[tuple[PreparedDocument, bool]]:
        pool = self.processor.pool
        assert pool is not None
        for k in range(len(self.sources)):
            self._submit()
            outcome = pool.outcome(self.futures.popleft())
            if isinstance(outcome, IngestError):
                raise outcome
            whole = outcome.source.part < 0
            self.read, self.chunks = k + 1, self.chunks + len(outcome.chunks)
            last = whole or k == len(self.sources) - 1
            yield outcome, last
            if last:
                return

    def estimate(self, done: int) -> tuple[int, bool]:
        """(chunks in all, estimated?): exact once every part is read."""
        if self.read >= len(self.sources):
            return self.chunks, False
        return int(self.chunks * len(self.sources) / max(self.read, 1)), True

    def close(self) -> None:
        for future in self.futures:
            future.cancel()
