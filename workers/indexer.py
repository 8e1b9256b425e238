"""Brings the index of a share in line with the share: the engine behind sync, run and watch.

Per document: record it as pending in the catalog (durable), parse and chunk in the parse pool,
embed in batches across documents, then commit: check the file has not changed since it was read
(else the result is stale and dropped: a newer change is on its way), write the new version's
points, claim the version in the catalog (compare-and-set: a newer version already claimed wins),
remove the older versions' points, mark the document indexed. A crash anywhere leaves it pending,
and redoing it writes the same point ids. A moved file (same bytes under a new path) is re-pointed
without parsing or embedding.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from index.acl import Access
from index.catalog import DELETED, FAILED, INDEXED, PENDING, SKIPPED, Catalog, DocumentRecord
from index.schema import build_metadata, document_id
from index.store import QdrantIndex, make_point
from ingest.errors import FileChanged, IngestError, TransientError, UnsupportedType
from ingest.guards import read_file_in_share
from ingest.models import EmbeddedChunk, PreparedDocument, SourceFile
from ingest.paths import display
from ingest.pipeline import EmbeddingPlan, plan_embedding
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.parse import filetype_of
from ingest.stages.sparse import SparseEncoder
from workers import metrics
from workers.captions import FIGURE_FILETYPES, FigureCaptioner
from workers.outages import is_transient
from workers.parsepool import Parser
from workers.permissions import PermissionResolver
from workers.scanner import FileEntry, is_ignored, scan, stat_path

log = logging.getLogger(__name__)

#: parse results waiting in flight while the main thread embeds
_WINDOW = 64
#: embed once this many chunks are ready (cross-document batches)
_FLUSH_CHUNKS = 256


@dataclass
class _Batch:
    """Documents whose vectors the model is computing (on the embedding thread)."""

    ready: list[tuple[WorkItem, PreparedDocument]]
    plan: EmbeddingPlan
    vectors: Future[Any]


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def close(self) -> Any: ...


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


ProgressFactory = Callable[[int, str], Progress]
#: distributed mode: hands the documents to process to the queue instead of processing them here
Dispatch = Callable[[list["WorkItem"]], None]


_COUNTS = ("new", "changed", "unchanged", "deleted", "moved", "failed", "skipped", "superseded")


@dataclass
class SyncReport:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    moved: int = 0
    failed: int = 0
    skipped: int = 0
    #: read while the file was still changing: dropped, the newer change is processed instead
    superseded: int = 0
    embedded: int = 0
    reused: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    def add(self, other: SyncReport) -> None:
        for name in (*_COUNTS, "embedded", "reused", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.extend(other.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": {name: getattr(self, name) for name in _COUNTS},
            "chunks": {"embedded": self.embedded, "reused": self.reused},
            "seconds": round(self.seconds, 3),
            "failures": self.failures,
        }


@dataclass
class WorkItem:
    """A document to (re)process."""

    share: str
    root: str
    entry: FileEntry
    doc_id: str
    access: Access
    acl_note: str | None
    record: DocumentRecord | None
    kind: str  # "new" or "changed"
    #: wall-clock time of the change (the event, or the file's mtime)
    changed_at: float

    @property
    def source(self) -> SourceFile:
        e = self.entry
        return SourceFile(self.share, self.root, e.path, e.size, e.mtime_ns)


@dataclass
class _Plan:
    work: list[WorkItem] = field(default_factory=list)
    gone: list[DocumentRecord] = field(default_factory=list)


def _unsupported(path: str) -> str | None:
    try:
        filetype_of(path)
    except UnsupportedType as exc:
        return str(exc)
    return None


class Indexer:
    def __init__(
        self,
        catalog: Catalog,
        store: QdrantIndex,
        embedder: SentenceEmbedder,
        pool: Parser | None,
        *,
        ignore: list[str],
        max_file_bytes: int,
        sparse: SparseEncoder | None = None,
        progress: ProgressFactory | None = None,
        permissions: PermissionResolver | None = None,
        dispatch: Dispatch | None = None,
        contain_write_errors: bool = True,
        figures: FigureCaptioner | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.embedder = embedder
        self.pool = pool
        self.ignore = ignore
        self.max_file_bytes = max_file_bytes
        self.sparse = sparse or SparseEncoder()
        self.progress = progress or (lambda total, desc: _NoProgress())
        self.permissions = permissions or PermissionResolver()
        self.dispatch = dispatch
        #: True: a failed write is recorded and left pending; False: it is raised (Celery retries)
        self.contain_write_errors = contain_write_errors
        #: captions and OCR of figures, added after the text is committed; None: both off
        self.figures = figures
        self.stop = threading.Event()

    # -- entry points -------------------------------------------------------------------------
    def sync_share(self, share: str, root: str) -> SyncReport:
        """Reconcile a whole share with the catalog and the index."""
        started = time.monotonic()
        report = SyncReport()
        self.permissions.reset()
        known = self.catalog.documents(share)
        plan = _Plan()
        seen: set[str] = set()
        for entry in scan(root, self.ignore):
            seen.add(entry.path)
            self._plan_one(
                share, root, entry, known.get(entry.path), plan, report, entry.mtime_ns / 1e9
            )
        plan.gone = [
            rec for path, rec in known.items() if path not in seen and rec.status != DELETED
        ]
        self._carry_out(share, root, plan, report, {})
        report.seconds = time.monotonic() - started
        return report

    def sync_paths(self, share: str, root: str, changes: Mapping[str, float]) -> SyncReport:
        """Bring the paths of watcher events up to date; ``changes`` maps path -> event time."""
        started = time.monotonic()
        report = SyncReport()
        self.permissions.reset()
        plan = _Plan()
        wanted = {
            path: at
            for path, at in changes.items()
            if not any(is_ignored(part, self.ignore) for part in path.split("/"))
        }
        known = self.catalog.find_many(share, wanted)
        for path, changed_at in wanted.items():
            record = known.get(path)
            entry = stat_path(root, path)
            if entry is None or stat.S_ISDIR(entry.mode):  # gone, or now a directory
                if record is not None and record.status != DELETED:
                    plan.gone.append(record)
                continue
            self._plan_one(share, root, entry, record, plan, report, changed_at)
        self._carry_out(share, root, plan, report, changes)
        report.seconds = time.monotonic() - started
        return report

    def _carry_out(self, share: str, root: str, plan: _Plan, report: SyncReport,
                   changes: Mapping[str, float]) -> None:  # fmt: skip
        self._match_moves(root, plan, report)
        self._delete(plan.gone, report, changes)
        for item in plan.work:  # durable before any work: a crash leaves them pending
            e = item.entry
            allow, deny = item.access.as_lists()
            self.catalog.upsert_seen(
                item.doc_id, share, e.path, e.size, e.mtime_ns, allow, deny, item.acl_note
            )
        if self.dispatch is not None:
            self.dispatch(plan.work)
        else:
            self._process(plan.work, report, share)

    # -- planning -----------------------------------------------------------------------------
    def _plan_one(
        self, share: str, root: str, entry: FileEntry, record: DocumentRecord | None,
        plan: _Plan, report: SyncReport, changed_at: float,
    ) -> None:  # fmt: skip
        """Classify one file; an unexpected error costs that file only (recorded on it), an
        outage (the catalog or the index unreachable) stops the pass, to be retried whole."""
        try:
            self._classify(share, root, entry, record, plan, report, changed_at)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("planning %s:%s failed", share, display(entry.path))
            reason = f"unexpected error while planning: {type(exc).__name__}: {exc}"
            self._planning_failed(share, entry, record, reason, report)

    def _planning_failed(
        self, share: str, entry: FileEntry, record: DocumentRecord | None, reason: str,
        report: SyncReport,
    ) -> None:  # fmt: skip
        try:
            doc_id = record.id if record is not None else document_id(share, entry.path)
            self.catalog.upsert_seen(
                doc_id, share, entry.path, entry.size, entry.mtime_ns, [], [], None
            )
            self._record_error(doc_id, share, entry.path, FAILED, reason, report)
        except Exception as exc:  # not even recordable: reported, the share goes on
            if is_transient(exc):
                raise
            log.exception("recording the failure of %s:%s failed", share, display(entry.path))
            report.failed += 1
            report.failures.append(
                {"share": share, "path": entry.path, "status": FAILED, "reason": reason}
            )

    def _classify(
        self, share: str, root: str, entry: FileEntry, record: DocumentRecord | None,
        plan: _Plan, report: SyncReport, changed_at: float,
    ) -> None:  # fmt: skip
        access, note = self.permissions.resolve(share, root, entry.path)
        live = record if record is not None and record.status != DELETED else None
        doc_id = record.id if record is not None else document_id(share, entry.path)
        problem = entry.problem or _unsupported(entry.path)
        if problem is not None:  # never opened, never sent to a parser
            if live and live.status == SKIPPED and live.error == problem:
                report.unchanged += 1
                return
            allow, deny = access.as_lists()
            self.catalog.upsert_seen(
                doc_id, share, entry.path, entry.size, entry.mtime_ns, allow, deny, note
            )
            if live and live.version > 0:  # a document replaced by a link or a FIFO
                self.store.delete_document(doc_id)
            self._record_error(doc_id, share, entry.path, SKIPPED, problem, report)
            return
        if live and self._unchanged(root, entry, live):
            report.unchanged += 1
            self._update_acl(live, access, note)
            return
        kind = "changed" if live and live.version > 0 else "new"
        plan.work.append(
            WorkItem(share, root, entry, doc_id, access, note, record, kind, changed_at)
        )

    def _unchanged(self, root: str, entry: FileEntry, record: DocumentRecord) -> bool:
        """Same size and mtime: not even hashed. Only the mtime moved: hashed, not parsed."""
        if record.status == PENDING:
            return False
        if record.captions == "pending" and self.figures is not None:
            return False  # the VLM was down: parse again (cached), add the captions
        if (record.size, record.mtime_ns) == (entry.size, entry.mtime_ns):
            return True
        if (
            record.status == INDEXED
            and record.content_hash
            and self._hash(root, entry) == record.content_hash
        ):
            self.catalog.mark_unchanged(record.id, entry.size, entry.mtime_ns)
            return True
        return False

    def _hash(self, root: str, entry: FileEntry) -> str | None:
        try:
            data = read_file_in_share(root, entry.path, self.max_file_bytes).data
        except (IngestError, OSError):
            return None
        return hashlib.sha256(data).hexdigest()

    def _update_acl(self, record: DocumentRecord, access: Access, note: str | None) -> None:
        """A permission-only change: rewrite the payload in place, never re-embed."""
        allow, deny = access.as_lists()
        if (allow, deny, note) != (sorted(record.acl), sorted(record.acl_deny), record.acl_note):
            if record.version > 0:
                self.store.set_acl(record.id, allow, deny)
            self.catalog.set_acl(record.id, allow, deny, note)
            metrics.DOCUMENTS.labels(record.share, "acl_changed").inc()

    def _match_moves(self, root: str, plan: _Plan, report: SyncReport) -> None:
        """A new path holding the exact bytes of a vanished document is that document, moved."""
        by_size: dict[int, list[DocumentRecord]] = {}
        for rec in plan.gone:
            if rec.status == INDEXED and rec.content_hash:
                by_size.setdefault(rec.size, []).append(rec)
        if not by_size:
            return
        remaining = []
        for item in plan.work:
            candidates = by_size.get(item.entry.size) if item.kind == "new" else None
            digest = self._hash(root, item.entry) if candidates else None
            match = next((r for r in candidates or () if r.content_hash == digest), None)
            if match is None:
                remaining.append(item)
                continue
            candidates.remove(match)  # type: ignore[union-attr]
            plan.gone.remove(match)
            self._repoint(match, item)
            report.moved += 1
        plan.work = remaining

    def _repoint(self, record: DocumentRecord, item: WorkItem) -> None:
        e = item.entry
        allow, deny = item.access.as_lists()
        self.catalog.repoint(record.id, e.path, e.size, e.mtime_ns, allow, deny)
        self.store.set_location(record.id, e.path, e.mtime_ns)
        if (allow, deny) != (sorted(record.acl), sorted(record.acl_deny)):
            self.store.set_acl(record.id, allow, deny)
        self._observe(item.share, "moved", item.changed_at)

    def _delete(
        self, records: list[DocumentRecord], report: SyncReport, changes: Mapping[str, float]
    ) -> None:
        for record in records:
            self.store.delete_document(record.id)
            self.catalog.mark_deleted([record.id])
            report.deleted += 1
            if record.path in changes:
                self._observe(record.share, "deleted", changes[record.path])

    def _observe(self, share: str, change: str, changed_at: float) -> None:
        """Freshness: from the change to the moment it is searchable."""
        seconds = max(0.0, time.time() - changed_at)
        metrics.FRESHNESS.labels(share, change).observe(seconds)
        metrics.DOCUMENTS.labels(share, change).inc()
        self.catalog.record_freshness(share, change, seconds)

    # -- one document at a time (distributed mode) --------------------------------------------
    def work_item(self, record: DocumentRecord, root: str, changed_at: float) -> WorkItem | None:
        """What to do for a dispatched document, from the file as it is now; None if it is no
        longer a file (the next plan of its share records that)."""
        entry = stat_path(root, record.path)
        if entry is None or not stat.S_ISREG(entry.mode):
            return None
        self.permissions.reset()
        access, note = self.permissions.resolve(record.share, root, record.path)
        kind = "changed" if record.version > 0 else "new"
        return WorkItem(
            record.share, root, entry, record.id, access, note, record, kind, changed_at
        )

    def parse(self, item: WorkItem) -> PreparedDocument | IngestError:
        """Parse and chunk in the parse pool (memory and time limits); an error is returned."""
        assert self.pool is not None, "this indexer has no parse pool"
        return self.pool.outcome(self.pool.submit(item.source))

    def record_error(self, item: WorkItem, error: IngestError, report: SyncReport) -> None:
        status = PENDING if isinstance(error, TransientError) else error.status
        self._record_error(item.doc_id, item.share, item.entry.path, status, str(error), report)

    def commit_many(
        self, ready: list[tuple[WorkItem, PreparedDocument]], report: SyncReport
    ) -> None:
        """Embed several documents in batches across them, and write each."""
        self._embed_and_write(ready, report)

    # -- processing ---------------------------------------------------------------------------
    def _process(self, work: list[WorkItem], report: SyncReport, share: str) -> None:
        """Three things at once: the parse processes read the next documents, the embedding
        thread runs the model on one batch, and this thread writes the batch before it (the
        model releases the GIL; writes and captions never wait for it, nor it for them)."""
        if not work:
            return
        pool = self.pool
        assert pool is not None, "this indexer has no parse pool"
        bar = self.progress(len(work), share)
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
                bar.update(len(embedding.ready))
            embedding = batch

        try:
            while (todo or inflight) and not self.stop.is_set():
                while todo and len(inflight) < _WINDOW:
                    item = todo.popleft()
                    inflight.append((item, pool.submit(item.source)))
                self.embedder.warm_up()  # loads once, while the parse processes start and work
                item, future = inflight.popleft()
                outcome = pool.outcome(future)
                if isinstance(outcome, IngestError):
                    self.record_error(item, outcome, report)
                    bar.update(1)
                    continue
                ready.append((item, outcome))
                ready_chunks += len(outcome.chunks)
                if ready_chunks >= _FLUSH_CHUNKS or not (todo or inflight):
                    flush()
            if ready:  # stopping: finish what is parsed, leave the rest pending in the catalog
                flush()
            if embedding is not None:
                self._finish_batch(embedding, report)
                bar.update(len(embedding.ready))
        finally:
            for _, future in inflight:
                future.cancel()
            model.shutdown(wait=True)  # an error here: the batch in the model is left pending
            bar.close()

    def _reuse_lookup(self, ready: list[tuple[WorkItem, PreparedDocument]]) -> Any:
        """Vectors a previous version of each document already has, by text hash."""
        by_doc = {id(doc): item for item, doc in ready}

        def reuse(doc: PreparedDocument) -> Any:
            record = by_doc[id(doc)].record
            if record is None or record.version == 0 or record.status == DELETED:
                return {}
            return self.store.stored_vectors(record.id, record.version)

        return reuse

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

    def _embed_and_write(
        self, ready: list[tuple[WorkItem, PreparedDocument]], report: SyncReport
    ) -> None:
        plan = plan_embedding([doc for _, doc in ready], self._reuse_lookup(ready))
        results = plan.assemble(self.embedder.embed_documents(plan.texts), self.sparse)
        self._count_embedded(plan, report)
        self._write_batch(ready, results, report)

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
                    raise
                log.exception("writing %s/%s failed", item.share, item.entry.path)
                reason = f"could not write to the index: {type(exc).__name__}: {exc}"
                self._record_error(
                    item.doc_id, item.share, item.entry.path, PENDING, reason, report
                )
                continue
            if not written:
                report.superseded += 1
                continue
            reused = sum(1 for c in chunks if c.reused)
            report.reused += reused
            metrics.REUSED.inc(reused)
            setattr(report, item.kind, getattr(report, item.kind) + 1)
            self._observe(item.share, item.kind, item.changed_at)
            committed.append((item, doc))
        for item, doc in committed:  # the text of the whole batch is searchable: now the figures
            self._add_captions(item, doc, report)

    def _add_captions(self, item: WorkItem, doc: PreparedDocument, report: SyncReport) -> None:
        """Write the document again with its figures' captions appended (same version)."""
        if not FIGURE_FILETYPES.intersection({doc.parsed.filetype}):
            return
        if self.figures is None:
            self.catalog.set_captions(item.doc_id, "off")
            return
        self.catalog.set_captions(item.doc_id, "pending")  # a crash from here: redone later
        status: str
        try:
            captions, status = self.figures.run(doc)
            if captions:
                full = PreparedDocument(doc.source, doc.parsed, doc.chunks + tuple(captions))
                current = self.catalog.get(item.doc_id)

                def reuse(_: PreparedDocument) -> Any:
                    version = current.version if current else 0
                    return self.store.stored_vectors(item.doc_id, version) if version else {}

                plan = plan_embedding([full], reuse)
                [embedded] = plan.assemble(self.embedder.embed_documents(plan.texts), self.sparse)
                self._count_embedded(plan, report)
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
        if self._changed_since_read(item, doc):
            return False
        # this content may be claimed already (the same file dispatched twice, or written again
        # with its captions): then allocate gives its number back and the same ids are written
        parsed = doc.parsed
        version = self.catalog.allocate_version(item.doc_id, parsed.content_hash)
        record = self.catalog.get(item.doc_id)
        same = record is not None and record.version == version
        allow, deny = item.access.as_lists()
        points = [
            make_point(
                item.doc_id, version, c.chunk.index, c.chunk.text, c.dense, c.sparse,
                build_metadata(
                    doc_id=item.doc_id, share=item.share, path=item.entry.path, version=version,
                    content_hash=parsed.content_hash, chunk_index=c.chunk.index, chunk_count=len(chunks),
                    kind=c.chunk.kind, kinds=list(c.chunk.kinds), page_numbers=list(c.chunk.page_numbers),
                    section=c.chunk.section, mtime_ns=parsed.mtime_ns, filetype=parsed.filetype,
                    embedding_model=self.embedder.model_name, text_hash=c.text_hash, acl=allow, acl_deny=deny,
                ),
            )
            for c in chunks
        ]  # fmt: skip
        self.store.upsert(points)  # the new version is complete before anything is removed
        if not self.catalog.claim_version(item.doc_id, version, parsed.content_hash):
            self.store.delete_version(item.doc_id, version)  # a newer version won: ours goes
            return False
        if not self.catalog.only_version(item.doc_id, version):  # a new document skips the scan
            self.store.delete_versions_before(item.doc_id, version)
        if same and record and record.chunk_count > len(chunks):  # the same version, read again
            self.store.delete_chunks(item.doc_id, version, range(len(chunks), record.chunk_count))
        self.catalog.finish_version(
            item.doc_id, version, parsed.content_hash, parsed.size, len(chunks), parsed.filetype
        )
        return True

    def _changed_since_read(self, item: WorkItem, doc: PreparedDocument) -> bool:
        """Re-check before committing: a file that moved on since it was read is not written."""
        now = stat_path(item.root, item.entry.path)
        return now is None or (now.size, now.mtime_ns) != (doc.parsed.size, doc.parsed.mtime_ns)

    def _record_error(
        self, doc_id: str, share: str, path: str, status: str, reason: str, report: SyncReport
    ) -> None:
        self.catalog.mark_failed(doc_id, status, reason)
        metrics.DOCUMENTS.labels(share, status).inc()
        if status == SKIPPED:
            report.skipped += 1
        else:
            report.failed += 1
            report.failures.append(
                {"share": share, "path": path, "status": status, "reason": reason}
            )
