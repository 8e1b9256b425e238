"""The composition root: the settings become the components of one process (``components``),
wired here and nowhere else: sources, catalog, index, model, parse pool, the planner and its
sink, the document processor and its passes, and for the embedded service the two lanes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from index.catalog import Catalog, CatalogError
from index.permissions.rules import RuleBook
from index.search import Searcher
from index.sql import safe_url
from index.vectors import VectorIndex
from index.writer import VersionedWriter
from ingest.captions import FigureCaptioner
from ingest.stages.embed import SentenceEmbedder
from workers.components import (
    make_embedder,
    make_figure_captioner,
    make_parse_job,
    make_searcher,
    make_sparse,
    open_catalog,
    open_store,
)
from workers.settings import Settings
from workers.sources import open_sources
from workers.sync.batches import SmallBatches
from workers.sync.board import WorkBoard
from workers.sync.captions import CaptionPass
from workers.sync.commit import DocumentCommitter
from workers.sync.embedding import ReusingEmbedder
from workers.sync.indexer import Indexer
from workers.sync.members import MemberBook
from workers.sync.outcomes import Outcomes
from workers.sync.parsepool import InlineParser, ParseJob, ParsePool, Parser
from workers.sync.planner import Planner
from workers.sync.processor import DocumentProcessor
from workers.sync.report import ProgressFactory, no_progress
from workers.sync.slices import LargeDocuments
from workers.sync.work import WorkSink
from workers.watch.lanes import BulkLane, LaneRouter, LiveGate

if TYPE_CHECKING:
    from celery import Celery

    from workers.distributed.dispatch import Dispatcher


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    store: VectorIndex
    embedder: SentenceEmbedder
    pool: Parser | None
    indexer: Indexer
    searcher: Searcher
    #: the share rules in force (the embedded service replaces them on a config reload)
    rules: RuleBook
    #: large documents in flight, with their progress (status)
    board: WorkBoard
    #: distributed mode: what sends documents to the queue (None: they are processed here)
    dispatcher: Dispatcher | None = None
    #: the embedded service's bulk lane (``open_runtime(lanes=...)``); None elsewhere
    bulk: BulkLane | None = None

    @property
    def processor(self) -> DocumentProcessor:
        assert self.indexer.processor is not None
        return self.indexer.processor

    def close(self) -> None:
        if self.bulk is not None:
            self.bulk.close()
            if self.bulk.processor.pool is not None:
                self.bulk.processor.pool.close()
        if self.pool is not None:
            self.pool.close()
        self.store.close()
        self.catalog.close()


@dataclass(frozen=True)
class _Parts:
    """What every processor of a process shares."""

    settings: Settings
    catalog: Catalog
    store: VectorIndex
    embedding: ReusingEmbedder
    writer: VersionedWriter
    figures: FigureCaptioner | None
    board: WorkBoard
    contain_write_errors: bool


def make_processor(parts: _Parts, pool: Parser | None, *, stop: threading.Event,
                   pause: Callable[[], None] = lambda: None,
                   progress: ProgressFactory = no_progress) -> DocumentProcessor:  # fmt: skip
    """A document processor: its three passes around the one embedding service."""
    s, contain = parts.settings, parts.contain_write_errors
    outcomes, members = Outcomes(parts.catalog), MemberBook(parts.catalog, parts.store)
    committer = DocumentCommitter(parts.writer, outcomes)
    captions = CaptionPass(parts.figures, parts.catalog, parts.embedding, committer, contain)
    small = SmallBatches(pool, members, parts.embedding, committer, captions, outcomes, stop,
                         contain_write_errors=contain)  # fmt: skip
    large = LargeDocuments(
        pool, members, parts.embedding, committer, parts.writer, parts.catalog, parts.store,
        outcomes, parts.board, stop, pause, contain_write_errors=contain,
        part_bytes=int(s.part_mb * 1024 * 1024), slice_chunks=s.slice_chunks,
    )  # fmt: skip
    return DocumentProcessor(small, large, committer, members, pool, stop,
                             large_bytes=s.large_bytes, progress=progress)  # fmt: skip


def _lanes(parts: _Parts, live: DocumentProcessor, job: ParseJob,
           say: Callable[[str], object]) -> tuple[BulkLane, LaneRouter]:  # fmt: skip
    """The embedded service's two lanes: the live one (``live``, on the watch loop's thread) and
    a bulk lane with a parse process of its own (live documents never queue behind bulk
    parsing), which waits at each slice and step while the live lane works."""
    s = parts.settings
    gate = LiveGate()
    pool = ParsePool(job, s.parse_workers, s.parse_timeout_s, start=True,
                     container_timeout_factor=s.container_timeout_factor)  # fmt: skip
    bulk = BulkLane(make_processor(parts, pool, stop=threading.Event(), pause=gate.wait), gate,
                    say)  # fmt: skip
    return bulk, LaneRouter(live, bulk, gate, s.live_max_files)


def _check_catalog(settings: Settings, catalog: Catalog, store: VectorIndex) -> None:
    """An empty catalog beside an index that holds points was lost or replaced: indexing on
    would re-embed everything and leave the old points behind."""
    if any(catalog.counts().values()):
        return
    points = store.count()
    if points:
        raise CatalogError(
            f"the catalog at {safe_url(settings.catalog)} is empty but the index holds {points:,} "
            "points: it was lost or replaced; run 'shareindex rebuild' to rebuild it from the "
            "index (nothing is embedded again)"
        )


def open_runtime(
    settings: Settings,
    progress: ProgressFactory | None = None,
    *,
    parsing: Literal["pool", "inline", "none"] = "pool",
    warm: bool = True,
    transcribe: bool = True,
    queue: Celery | None = None,
    background: bool = True,
    check_catalog: bool = True,
    lanes: Callable[[str], object] | None = None,
) -> Runtime:
    """Everything an indexing process needs. Parsing: a pool of parse processes; ``inline`` in
    this process (a Celery prefork child); ``none`` (a process that only embeds).

    ``warm``: load the model and start the parse processes now (a service: the first change is
    fast). Otherwise both wait for the first document that needs them, so that a sync with
    nothing to do never imports torch or starts a parser.

    ``transcribe`` off: in the VLM layout mode, pages are not sent to the VLM from here (a
    cpu-queue worker); a document that needs it is handed to the gpu queue (PagesNeedGpu).

    ``queue``: the distributed mode's Celery app: planned documents go to the queue instead of
    being processed here, and a write error is raised (for the task's retry) instead of being
    recorded and swallowed.

    ``background`` off (a one-shot command): no index building in the background; call
    ``finish_writes`` at the end.

    ``lanes``: the embedded service's two lanes, the bulk lane reporting through this function
    (``Runtime.bulk``; the planner's documents are routed between them)."""
    embedder = make_embedder(settings)
    rules = RuleBook(settings.rules())
    sources = open_sources(settings, rules)
    job = make_parse_job(settings, embedder, [s.reader for s in sources.values()], transcribe)
    sparse = make_sparse(settings)
    catalog = open_catalog(settings)
    store = None
    pool: Parser | None = None
    try:
        store = open_store(settings, background=background)
        if parsing == "pool":
            pool = ParsePool(
                job, settings.parse_workers, settings.parse_timeout_s, start=warm,
                container_timeout_factor=settings.container_timeout_factor,
            )  # fmt: skip
        elif parsing == "inline":
            pool = InlineParser(job, settings.parse_timeout_s)
        if warm:
            embedder.warm_up()
        store.ensure_collection(embedder.model_name, embedder.dimension, sparse.tokenizer)
        if check_catalog:
            _check_catalog(settings, catalog, store)
        searcher = make_searcher(settings, store, embedder, sparse)
    except BaseException:
        if pool:
            pool.close()
        if store:
            store.close()
        catalog.close()
        raise
    figures = make_figure_captioner(settings, job)
    parts = _Parts(settings, catalog, store, ReusingEmbedder(catalog, store, embedder, sparse),
                   VersionedWriter(catalog, store, embedder.model_name), figures, WorkBoard(),
                   contain_write_errors=queue is None)  # fmt: skip
    processor = make_processor(parts, pool, stop=threading.Event(),
                               progress=progress or no_progress)  # fmt: skip
    dispatcher, bulk = None, None
    sink: WorkSink = processor.process
    if queue is not None:
        from workers.distributed.dispatch import Dispatcher  # Celery: the distributed mode's

        dispatcher = Dispatcher(queue, catalog, settings)
        sink = dispatcher.sink
    elif lanes is not None:
        bulk, sink = _lanes(parts, processor, job, lanes)
    planner = Planner(
        catalog, store, sink, ignore=settings.ignore_patterns,
        max_file_bytes=job.parse.max_file_bytes, recaption=figures is not None,
        max_delete_fraction=settings.max_delete_fraction, delete_guard_min=settings.delete_guard_min,
        keep_deleted_s=settings.keep_deleted_days * 86400,
    )  # fmt: skip
    indexer = Indexer(sources, planner, processor)
    return Runtime(settings, catalog, store, embedder, pool, indexer, searcher, rules,
                   parts.board, dispatcher, bulk)  # fmt: skip
