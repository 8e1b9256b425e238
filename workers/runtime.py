"""Builds the components from the settings, once per process, and closes them in order."""

from __future__ import annotations

import fcntl
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from index.cache import SqlContentCache
from index.catalog import Catalog, CatalogError, SqlCatalog
from index.edge import EdgeIndex
from index.migrate import migrate_local_mode, needs_migration
from index.permissions.posix import PermissionResolver
from index.permissions.rules import RuleBook
from index.qdrant import QdrantIndex, open_client
from index.search import Searcher
from index.sql import safe_url
from index.vectors import VectorIndex
from index.writer import VersionedWriter
from ingest.captions import FigureCaptioner
from ingest.stages.chunk import ChunkOptions, DocumentChunker, HFTokenCounter
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.figures import FigureOptions
from ingest.stages.model_files import model_max_tokens, tokenizer_file
from ingest.stages.ocr import OcrOptions
from ingest.stages.parse import ParseOptions
from ingest.stages.rerank import CrossEncoderReranker
from ingest.stages.sparse import SparseEncoder, SparseTokenizerUnavailable
from ingest.stages.vlm import VlmClient, VlmOptions
from workers.settings import ConfigError, Settings, prepare_data_dir

if TYPE_CHECKING:
    from celery import Celery

    from workers.distributed.dispatch import Dispatcher
from index.permissions.directory import LdapDirectory
from workers.sources.base import Source
from workers.sources.local import LocalFolder
from workers.sources.smb import SmbShare
from workers.sync.indexer import Indexer
from workers.sync.parsepool import InlineParser, ParseJob, ParsePool, Parser
from workers.sync.planner import Planner
from workers.sync.processor import DocumentProcessor
from workers.sync.report import ProgressFactory, no_progress
from workers.sync.work import WorkSink

log = logging.getLogger(__name__)
_MB = 1024 * 1024


def make_embedder(settings: Settings) -> SentenceEmbedder:
    """Built without loading the model (``warm_up`` loads it); a bad combination is a ConfigError."""
    backend, auto = settings.embedding_backend, settings.embedding_backend == "auto"
    if auto:
        backend = "onnx-int8" if settings.embedding_device == "cpu" else "torch"
    try:
        return SentenceEmbedder(
            settings.embedding_model,
            device=settings.embedding_device,
            batch_size=settings.embedding_batch,
            threads=settings.embedding_threads,
            query_prefix=settings.query_prefix,
            passage_prefix=settings.passage_prefix,
            backend=backend,
            export_dir=str(settings.models_path),
            fp16=settings.embedding_fp16,
            fallback=auto,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def make_vlm_client(settings: Settings) -> VlmClient | None:
    """The VLM (vLLM's OpenAI-compatible API); None when no URL is configured (captions off)."""
    if not settings.vlm_url:
        return None
    key = settings.vlm_api_key.get_secret_value() if settings.vlm_api_key else None
    return VlmClient(
        VlmOptions(
            url=settings.vlm_url, model=settings.vlm_model, api_key=key,
            prompt=settings.vlm_prompt, page_prompt=settings.vlm_page_prompt,
            max_tokens=settings.vlm_max_tokens, page_max_tokens=settings.vlm_page_max_tokens,
            max_image_side=settings.vlm_max_image_side, max_image_pixels=settings.vlm_max_image_pixels,
            max_page_side=settings.vlm_max_page_side, concurrency=settings.vlm_concurrency,
            timeout_s=settings.vlm_timeout_s, retries=settings.vlm_retries,
            cooldown_s=settings.vlm_cooldown_s,
        )
    )  # fmt: skip


def make_figure_captioner(settings: Settings, job: ParseJob) -> FigureCaptioner | None:
    """Captions (VLM) and OCR of figures and photos; None when both are off. Without a VLM,
    captions are recorded as "off" and figures are only OCR'd."""
    client = make_vlm_client(settings)
    read_figures = settings.ocr_enabled and settings.figure_ocr
    if client is None and not read_figures:
        return None
    return FigureCaptioner(
        captioner=client,
        cache=SqlContentCache(settings.catalog),
        options=FigureOptions(
            min_side_px=settings.figure_min_side_px,
            min_area_ratio=settings.figure_min_area_ratio,
        ),
        max_file_bytes=job.parse.max_file_bytes,
        chunker=DocumentChunker(HFTokenCounter(job.tokenizer_file), job.chunk),
        parse=job.parse if read_figures else None,
    )


def make_directory(settings: Settings) -> LdapDirectory | None:
    """The directory users of SMB shares are resolved in; None when none is configured."""
    if not settings.directory_url:
        return None
    password = settings.directory_password
    return LdapDirectory(
        settings.directory_url, settings.directory_username,
        password.get_secret_value() if password else None,
        ca_file=settings.directory_ca_file, tls_verify=settings.directory_tls_verify,
        base_dn=settings.directory_base_dn, cache_s=settings.directory_cache_s,
    )  # fmt: skip


def make_sparse(settings: Settings) -> SparseEncoder:
    try:
        return SparseEncoder(settings.sparse_tokenizer)
    except SparseTokenizerUnavailable as exc:
        raise ConfigError(str(exc)) from exc


def make_searcher(
    settings: Settings, store: VectorIndex, embedder: SentenceEmbedder, sparse: SparseEncoder
) -> Searcher:
    """The query side; a configured re-ranker is loaded now, so a missing one fails at start."""
    reranker = None
    if settings.reranker_model:
        reranker = CrossEncoderReranker(settings.reranker_model, device=settings.embedding_device)
        reranker.warm_up()
    return Searcher(store, embedder, sparse, reranker, settings.rerank_candidates)


def open_searcher(settings: Settings, warm: bool = False) -> tuple[VectorIndex, Searcher]:
    """The query side alone (the index and a searcher; no catalog, no parse pool), as the local
    search client and ``shareindex api`` use it. The caller closes the store."""
    sparse = make_sparse(settings)
    store = open_store(settings)
    try:
        embedder = make_embedder(settings)
        if warm:
            embedder.warm_up()
        store.ensure_collection(embedder.model_name, embedder.dimension, sparse.tokenizer)
        return store, make_searcher(settings, store, embedder, sparse)
    except BaseException:
        store.close()
        raise


def open_store(
    settings: Settings, say: Callable[[str], object] | None = None, *, background: bool = True
) -> VectorIndex:
    """The index: a Qdrant server (``qdrant_url``), else the embedded index in the data dir
    (Qdrant Edge; a local-mode index of an earlier release is migrated first). ``background``:
    the embedded index builds its HNSW index on its own when writes pause (a service, a worker);
    a one-shot command leaves that to ``finish_writes``."""
    prepare_data_dir(settings)
    if settings.qdrant_url or settings.embedded_index == "qdrant-local":
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = open_client(
            path=str(settings.qdrant_path), url=settings.qdrant_url, api_key=api_key
        )
        return QdrantIndex(client, settings.collection)
    with _migration_lock(settings):  # two processes starting together: one migrates
        if needs_migration(settings.qdrant_path, settings.collection, settings.index_path):
            migrate_local_mode(settings.qdrant_path, settings.collection, settings.index_path,
                               say or _to_stderr)  # fmt: skip
    return EdgeIndex(
        settings.index_path,
        optimize_after=settings.index_optimize_after if background else 0,
        idle_s=settings.index_optimize_idle_s,
    )


def finish_writes(settings: Settings, store: VectorIndex, say: Callable[[str], object]) -> None:
    """After a one-shot command's writes: build the embedded index's HNSW index when enough new
    points wait for it (the next searches are then fast from the start)."""
    if isinstance(store, EdgeIndex):
        waiting = store.unindexed()
        if settings.index_optimize_after and waiting >= settings.index_optimize_after:
            say(f"building the search index of {waiting:,} new points...")
            store.optimize()


@contextmanager
def _migration_lock(settings: Settings) -> Iterator[None]:
    with open(settings.data_dir / ".index-migration.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wait_for_catalog(settings: Settings, say: Callable[[str], object]) -> None:
    """A service starting while its catalog database is unreachable (restarting, the network
    down) waits for it, retrying with backoff, for ``catalog_wait_s``; then, or for a damaged
    catalog, the error is raised as it is. A one-shot command does not wait."""
    from index.catalog import CatalogDamaged, CatalogError

    deadline = time.monotonic() + settings.catalog_wait_s
    delay = 0.5
    while True:
        try:
            prepare_data_dir(settings)
            SqlCatalog(settings.catalog).close()
            return
        except CatalogDamaged:
            raise
        except CatalogError as exc:
            if time.monotonic() + delay > deadline:
                raise
            say(f"{exc}; retrying in {delay:g} s (waiting up to {settings.catalog_wait_s:g} s)")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def open_catalog(settings: Settings) -> Catalog:
    prepare_data_dir(settings)
    return SqlCatalog(settings.catalog)


def open_sources(settings: Settings, rules: RuleBook) -> dict[str, Source]:
    """Each configured share as a Source, each with its own permission reader (the share rules
    shared by all, replaceable)."""
    sources: dict[str, Source] = {}
    for name, root in settings.shares.items():
        if isinstance(root, str):  # smb://
            sources[name] = SmbShare(name, root, *settings.smb_account(root), rules,
                                     settings.share_permissions.get(name),
                                     settings.share_permissions_missing)  # fmt: skip
        else:
            sources[name] = LocalFolder(name, str(root), PermissionResolver(rules))
    return sources


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
    #: distributed mode: what sends documents to the queue (None: they are processed here)
    dispatcher: Dispatcher | None = None

    @property
    def processor(self) -> DocumentProcessor:
        assert self.indexer.processor is not None
        return self.indexer.processor

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.store.close()
        self.catalog.close()

    def bulk_processor(self) -> DocumentProcessor:
        """A second processor for the embedded service's bulk lane: the same writer, model and
        progress board, a parse process of its own (live documents never queue behind bulk
        parsing). Its pool is closed with ``processor.pool.close()``."""
        live = self.processor
        assert isinstance(self.pool, ParsePool), "the bulk lane needs a parse pool"
        s = self.settings
        pool = ParsePool(
            self.pool.job, s.parse_workers, s.parse_timeout_s, start=True,
            container_timeout_factor=s.container_timeout_factor,
        )  # fmt: skip
        return DocumentProcessor(
            self.catalog, self.store, self.embedder, pool, live.writer, sparse=live.sparse,
            figures=live.figures, contain_write_errors=True, large_bytes=live.large_bytes,
            part_bytes=live.part_bytes, slice_chunks=live.slice_chunks, board=live.board,
        )  # fmt: skip


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
    ``finish_writes`` at the end."""
    embedder = make_embedder(settings)
    tok = tokenizer_file(embedder.model_path)
    if tok is None:
        raise ConfigError(
            f"embedding model {settings.embedding_model!r} has no tokenizer.json at {embedder.model_path}"
        )
    # two tokens of the model's limit go to [CLS] and [SEP]
    max_tokens = min(settings.chunk_max_tokens, model_max_tokens(embedder.model_path) - 2)
    if max_tokens < settings.chunk_max_tokens:
        log.warning(
            "chunk_max_tokens %d is over the model's limit; using %d",
            settings.chunk_max_tokens,
            max_tokens,
        )
    job = ParseJob(
        parse=ParseOptions(
            max_file_bytes=int(settings.max_file_mb * _MB),
            max_uncompressed_bytes=int(settings.max_uncompressed_mb * _MB),
            languages=settings.languages,
            pdf_text=settings.pdf_text,
            languages_by_share=tuple(
                (share, tuple(lang for lang in langs.split("+") if lang))
                for share, langs in settings.ocr_languages_by_share.items()
            ),
            ocr=OcrOptions(
                enabled=settings.ocr_enabled,
                vertical=settings.ocr_vertical,
                dpi=settings.ocr_dpi,
                max_pages=settings.ocr_max_pages,
                # a long scan ends its attempt before the parse time limit, keeping its pages
                time_budget_s=settings.parse_timeout_s * 0.75,
            ),
            keep_textless_images=settings.vlm_url is not None,
            # a conversion that hangs is stopped before the parse time limit, with its reason
            convert_timeout_s=settings.parse_timeout_s * 0.8,
            max_members=settings.max_archive_members,
            max_container_depth=settings.max_container_depth,
            # opened by URL inside each parse process: OCR is cached where it runs
            cache=SqlContentCache(settings.catalog),
            page_transcriber=make_vlm_client(settings) if settings.vlm_layout_mode else None,
            transcribe_here=transcribe,
            layout_all_pages=settings.vlm_layout_pages == "all",
        ),
        chunk=ChunkOptions(max_tokens=max_tokens),
        tokenizer_file=tok,
        memory_mb=settings.parse_memory_mb,
        smb_accounts=settings.smb_accounts,
    )
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
    rules = RuleBook(settings.rules())
    sources = open_sources(settings, rules)
    figures = make_figure_captioner(settings, job)
    processor = DocumentProcessor(
        catalog, store, embedder, pool, VersionedWriter(catalog, store, embedder.model_name),
        sparse=sparse, figures=figures, progress=progress or no_progress,
        contain_write_errors=queue is None, large_bytes=settings.large_bytes,
        part_bytes=int(settings.part_mb * 1024 * 1024), slice_chunks=settings.slice_chunks,
    )  # fmt: skip
    dispatcher = None
    sink: WorkSink = processor.process
    if queue is not None:
        from workers.distributed.dispatch import Dispatcher

        dispatcher = Dispatcher(queue, catalog, settings)
        sink = dispatcher.sink
    planner = Planner(
        catalog, store, sink, ignore=settings.ignore_patterns,
        max_file_bytes=job.parse.max_file_bytes, recaption=figures is not None,
        max_delete_fraction=settings.max_delete_fraction, delete_guard_min=settings.delete_guard_min,
        keep_deleted_s=settings.keep_deleted_days * 86400,
    )  # fmt: skip
    indexer = Indexer(sources, planner, processor)
    return Runtime(settings, catalog, store, embedder, pool, indexer, searcher, rules, dispatcher)
