"""Embedding with reuse: the one service every pass embeds through. The vectors a stored version
already has for the same chunk text are fetched from the index (a document's own previous
version, or a deleted document's kept one of the same content); only the rest goes to the
model. Metrics and the pass's report count what was embedded and what reused."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from index.catalog import DELETED, Catalog
from index.vectors import VectorIndex
from ingest.models import Chunk, EmbeddedChunk, PreparedDocument
from ingest.pipeline import EmbeddingPlan, ReuseLookup, plan_embedding, text_hash
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.sparse import SparseEncoder
from workers import metrics
from workers.sync.report import SyncReport
from workers.sync.work import WorkItem

Pairs = list[tuple[WorkItem, PreparedDocument]]


class ReusingEmbedder:
    def __init__(
        self, catalog: Catalog, store: VectorIndex, model: SentenceEmbedder, sparse: SparseEncoder
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.model = model
        self.sparse = sparse

    def warm_up(self) -> None:
        self.model.warm_up()

    # -- what can be reused -------------------------------------------------------------------
    def previous(self, item: WorkItem, content_hash: str) -> tuple[str, int] | None:
        """The stored version whose vectors this document may reuse: its own previous one (of
        a deleted document too, while its points are kept), else a deleted document's of the
        same content, kept (the file came back under another path)."""
        record = item.record
        if record is not None and record.version and (record.status != DELETED or record.kept):
            return record.id, record.version
        twin = self.catalog.kept_twin(content_hash) if content_hash else None
        return (twin.id, twin.version) if twin is not None else None

    def lookup(self, ready: Pairs) -> ReuseLookup:
        """Vectors a previous version of each document already has, by text hash."""
        by_doc = {id(doc): item for item, doc in ready}

        def reuse(doc: PreparedDocument) -> Any:
            previous = self.previous(by_doc[id(doc)], doc.parsed.content_hash)
            return self.store.stored_vectors(*previous) if previous else {}

        return reuse

    def of_version(self, doc_id: str, version: int) -> ReuseLookup:
        """Reuse from one stored version (a document written again with its captions)."""

        def reuse(_: PreparedDocument) -> Any:
            return self.store.stored_vectors(doc_id, version) if version else {}

        return reuse

    # -- embedding ----------------------------------------------------------------------------
    def start(self, docs: list[PreparedDocument], reuse: ReuseLookup,
              model_thread: ThreadPoolExecutor) -> tuple[EmbeddingPlan, Future[Any]]:  # fmt: skip
        """Plan here (the index is read on the calling thread only); the model runs on its
        thread (it releases the GIL: the caller writes the batch before meanwhile)."""
        plan = plan_embedding(docs, reuse)
        return plan, model_thread.submit(self.model.embed_documents, plan.texts)

    def finish(
        self, plan: EmbeddingPlan, vectors: Any, report: SyncReport
    ) -> list[list[EmbeddedChunk]]:
        results = plan.assemble(vectors, self.sparse)
        report.embedded += len(plan.todo)
        metrics.EMBEDDINGS.inc(len(plan.todo))
        return results

    def embed(
        self, docs: list[PreparedDocument], reuse: ReuseLookup, report: SyncReport
    ) -> list[list[EmbeddedChunk]]:
        """On this thread: plan, run the model, assemble."""
        plan = plan_embedding(docs, reuse)
        return self.finish(plan, self.model.embed_documents(plan.texts), report)

    def embed_slice(
        self, doc_id: str, old: int, known: dict[str, int], chunks: Sequence[Chunk],
        report: SyncReport,
    ) -> list[EmbeddedChunk]:  # fmt: skip
        """One slice of a large document: the vectors the old version has for the same text are
        fetched (only those: ``known`` maps its text hashes to chunk indexes), the rest embedded."""
        wanted = sorted({known[h] for h in (text_hash(c.text) for c in chunks) if h in known})

        def reuse(_: PreparedDocument) -> Any:
            return self.store.stored_vectors(doc_id, old, wanted) if wanted else {}

        piece = PreparedDocument(source=None, parsed=None, chunks=tuple(chunks))  # type: ignore[arg-type]
        [embedded] = self.embed([piece], reuse, report)
        count_reused(embedded, report)
        return embedded


def count_reused(chunks: Sequence[EmbeddedChunk], report: SyncReport) -> None:
    reused = sum(1 for c in chunks if c.reused)
    report.reused += reused
    metrics.REUSED.inc(reused)
