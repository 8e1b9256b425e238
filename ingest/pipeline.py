"""The order of the stages: parse (with OCR) -> chunk (per document, CPU), embed (across
documents), and captions for the figures (VLM, after the text).

``prepare`` runs wherever parsing runs (a parse process here, a cpu-queue worker later);
``embed`` takes chunks of many documents at once so that batches stay full. ``caption_figures``
runs after the text is prepared and never blocks it: while the VLM is down it says "pending" and
the caller indexes the text now and the captions later.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ingest.cache import ContentCache
from ingest.errors import FileChanged, OcrUnavailable, PermanentError, VlmUnavailable
from ingest.guards import read_file_in_share
from ingest.images import IMAGE_FILETYPES
from ingest.models import Chunk, Element, EmbeddedChunk, PreparedDocument, SourceFile, SparseVector
from ingest.stages.chunk import DocumentChunker
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.figures import Figure, FigureOptions, extract_figures
from ingest.stages.parse import ParseOptions, parse
from ingest.stages.sparse import SparseEncoder
from ingest.stages.vlm import ImageCaptioner, caption_image
from ingest.text import is_cjk

log = logging.getLogger(__name__)


def prepare(
    source: SourceFile, options: ParseOptions, chunker: DocumentChunker
) -> PreparedDocument:
    parsed = parse(source, options)
    return PreparedDocument(
        source=source, parsed=parsed, chunks=tuple(chunker.run(parsed.elements))
    )


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class StoredVectors:
    dense: tuple[float, ...]
    sparse: SparseVector


#: text hash -> vectors already in the index (a previous version of the same document)
ReuseLookup = Callable[[PreparedDocument], Mapping[str, StoredVectors]]


@dataclass
class EmbeddingPlan:
    """What a set of documents needs from the model: each distinct new text once; the texts a
    previous version already has vectors for are reused. ``assemble`` puts the model's vectors
    back in document order (the model runs in between, possibly on another thread)."""

    docs: Sequence[PreparedDocument]
    hashes: list[list[str]]
    known: list[Mapping[str, StoredVectors]]
    #: text hash -> text, for the texts the model must embed
    todo: dict[str, str]

    @property
    def texts(self) -> list[str]:
        return list(self.todo.values())

    def assemble(self, vectors: np.ndarray, sparse: SparseEncoder) -> list[list[EmbeddedChunk]]:
        by_hash = dict(zip(self.todo, vectors, strict=True))
        out: list[list[EmbeddedChunk]] = []
        for doc, doc_hashes, doc_known in zip(self.docs, self.hashes, self.known, strict=True):
            embedded = []
            for chunk, h in zip(doc.chunks, doc_hashes, strict=True):
                if h in doc_known:
                    stored = doc_known[h]
                    embedded.append(
                        EmbeddedChunk(chunk, stored.dense, stored.sparse, h, reused=True)
                    )
                else:
                    dense = tuple(np.asarray(by_hash[h], dtype=np.float32).tolist())
                    embedded.append(
                        EmbeddedChunk(chunk, dense, sparse.encode_document(chunk.text), h)
                    )
            out.append(embedded)
        return out


def plan_embedding(
    docs: Sequence[PreparedDocument], reuse: ReuseLookup | None = None
) -> EmbeddingPlan:
    hashes = [[text_hash(c.text) for c in doc.chunks] for doc in docs]
    known = [reuse(doc) if reuse else {} for doc in docs]
    todo: dict[str, str] = {}
    for doc, doc_hashes, doc_known in zip(docs, hashes, known, strict=True):
        for chunk, h in zip(doc.chunks, doc_hashes, strict=True):
            if h not in doc_known:
                todo.setdefault(h, chunk.text)
    return EmbeddingPlan(docs, hashes, known, todo)


def embed(
    docs: Sequence[PreparedDocument],
    embedder: SentenceEmbedder,
    sparse: SparseEncoder,
    reuse: ReuseLookup | None = None,
) -> list[list[EmbeddedChunk]]:
    """Embed the chunks of several documents in one pass; reuse stored vectors of equal text."""
    plan = plan_embedding(docs, reuse)
    return plan.assemble(embedder.embed_documents(plan.texts), sparse)


# -- captions ---------------------------------------------------------------------------------------

#: "captioned": every figure that could be captioned was; "off": no VLM configured;
#: "pending": the VLM was unavailable for some figures, whose captions must be added later
CaptionStatus = Literal["captioned", "off", "pending"]

#: the OCR of one image (Tesseract through the cache, for example); "" when it has no text
ImageReader = Callable[[bytes], str]


def document_figures(
    prepared: PreparedDocument, options: FigureOptions, max_file_bytes: int
) -> list[Figure]:
    """The figures of exactly the bytes that were parsed, re-read from the share.

    Figures travel as a path, never as image bytes through the queue: the worker that captions
    reads the file again (cheap) and refuses it if it changed since parsing (``FileChanged``:
    the newer version has its own task).
    """
    source = prepared.source
    content = read_file_in_share(source.root, source.path, max_file_bytes)
    if hashlib.sha256(content.data).hexdigest() != prepared.parsed.content_hash:
        raise FileChanged("the file changed since it was parsed; its new version gets captions")
    return extract_figures(content.data, prepared.parsed.filetype, options)


@dataclass(frozen=True)
class _FigureText:
    caption: str
    ocr: str
    unavailable: bool


def caption_figures(
    prepared: PreparedDocument,
    figures: Sequence[Figure],
    captioner: ImageCaptioner | None,
    cache: ContentCache | None = None,
    *,
    ocr: ImageReader | None = None,
    chunker: DocumentChunker | None = None,
) -> tuple[list[Chunk], CaptionStatus]:
    """Chunks of kind ``image_caption`` for the figures, numbered after the text chunks.

    Each holds the figure's caption and, with ``ocr``, the text read in the figure (for a
    standalone image that text is already the document's, so it is not repeated). A figure with
    neither gets no chunk. With a ``chunker``, a long caption is split to the model's size.
    """
    doc_is_image = prepared.parsed.filetype in IMAGE_FILETYPES
    language = _document_language(prepared)
    reader = None if doc_is_image else ocr

    def describe(figure: Figure) -> _FigureText:
        return _describe_figure(figure, captioner, cache, reader, language)

    workers = max(1, min(len(figures), captioner.concurrency if captioner else 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caption") as pool:
        texts = list(pool.map(describe, figures))
    chunks: list[Chunk] = []
    start = len(prepared.chunks)
    for figure, text in zip(figures, texts, strict=True):
        body = "\n\n".join(part for part in (text.caption, text.ocr) if part)
        if body:
            section = figure.section or _section_of_page(prepared, figure.page)
            chunks += _caption_chunks(body, figure.page, section, start + len(chunks), chunker)
    if captioner is None:
        return chunks, "off"
    return chunks, "pending" if any(t.unavailable for t in texts) else "captioned"


def _describe_figure(
    figure: Figure,
    captioner: ImageCaptioner | None,
    cache: ContentCache | None,
    ocr: ImageReader | None,
    language: str | None,
) -> _FigureText:
    caption, unavailable = "", False
    if captioner is not None:
        try:
            caption = caption_image(captioner, figure.data, cache, language)
        except VlmUnavailable:
            unavailable = True
        except PermanentError as exc:  # this image only: refused by the VLM, or undecodable
            log.warning("figure %s not captioned: %s", figure.sha256[:12], exc)
    text = ""
    if ocr is not None:
        try:
            text = ocr(figure.data)
        except (PermanentError, OcrUnavailable) as exc:
            log.warning("figure %s not OCR'd: %s", figure.sha256[:12], exc)
    return _FigureText(caption, text, unavailable)


def _caption_chunks(
    text: str, page: int | None, section: str | None, start: int, chunker: DocumentChunker | None
) -> list[Chunk]:
    pages = (page,) if page is not None else ()
    if chunker is None:
        return [Chunk(start, text, "image_caption", pages, section, ("image_caption",))]
    pieces = chunker.run([Element(kind="image_caption", text=text, page_number=page)])
    return [replace(c, index=start + i, section=section) for i, c in enumerate(pieces)]


def _section_of_page(prepared: PreparedDocument, page: int | None) -> str | None:
    """The section of the first text chunk on the figure's page: a cheap "where it stands"."""
    if page is None:
        return None
    for chunk in prepared.chunks:
        if page in chunk.page_numbers and chunk.section:
            return chunk.section
    return None


def _document_language(prepared: PreparedDocument) -> str | None:
    """The language captions are asked in: the document's, from a sample of its text."""
    sample = "".join(c.text for c in prepared.chunks[:20] if c.kind != "image_caption")[:4000]
    if len(sample.strip()) < 20:
        return None
    return "Japanese" if is_cjk(sample) else "English"
