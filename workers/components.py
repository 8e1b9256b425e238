"""The components built from the settings, one factory each: the embedding model, the VLM and
figure captioner, the directory, the sparse encoder, the index (a Qdrant server, or the embedded
Qdrant Edge shard), the catalog, the searcher. ``workers.runtime`` assembles them into a process."""

from __future__ import annotations

import fcntl
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from index.cache import SqlContentCache
from index.catalog import Catalog, CatalogDamaged, CatalogError, SqlCatalog
from index.edge import EdgeIndex
from index.migrate import migrate_local_mode, needs_migration
from index.permissions.directory import LdapDirectory
from index.search import Searcher
from index.vectors import VectorIndex
from ingest.captions import FigureCaptioner
from ingest.readers import Readers, ShareReader
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
from workers.sync.parsepool import ParseJob

T = TypeVar("T")

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
        readers=job.parse.readers,
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
        # measured: qdrant-client takes 1.5-2.5 s to import; the embedded default never needs it
        from index.qdrant import QdrantIndex, open_client

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

    def reach() -> None:
        prepare_data_dir(settings)
        SqlCatalog(settings.catalog).close()

    opening(settings, reach, say)


def opening(settings: Settings, open_: Callable[[], T], say: Callable[[str], object]) -> T:
    """``open_()`` retried with backoff for ``catalog_wait_s`` while the catalog (or another
    service) is unreachable: a database that goes away again just after a service saw it answer
    is waited for the same way. A damaged catalog, or anything not an outage, is raised."""
    from workers.outages import is_transient

    deadline = time.monotonic() + settings.catalog_wait_s
    delay = 0.5
    while True:
        try:
            return open_()
        except CatalogDamaged:
            raise
        except Exception as exc:
            if not (isinstance(exc, CatalogError) or is_transient(exc)):
                raise
            if time.monotonic() + delay > deadline:
                raise
            say(f"{exc}; retrying in {delay:g} s (waiting up to {settings.catalog_wait_s:g} s)")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def open_catalog(settings: Settings) -> Catalog:
    prepare_data_dir(settings)
    return SqlCatalog(settings.catalog)


def make_parse_job(
    settings: Settings, embedder: SentenceEmbedder, readers: Iterable[ShareReader],
    transcribe: bool = True,
) -> ParseJob:  # fmt: skip
    """What every parse process needs (picklable): the parse options with each share's reader,
    the chunker's options, the tokenizer. ``transcribe`` off: VLM layout pages are handed to the
    gpu queue, not read here."""
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
    return ParseJob(
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
            readers=Readers.of(readers),
        ),
        chunk=ChunkOptions(max_tokens=max_tokens),
        tokenizer_file=tok,
        memory_mb=settings.parse_memory_mb,
    )

