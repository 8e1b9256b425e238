"""Figures to caption chunks, after the text is indexed (the text never waits for the GPU).

The figures of a committed document are read again from the share (by path, never through the
queue), captioned by the VLM and OCR'd by Tesseract (both through the content cache), and the
document is written once more with the caption chunks appended: same content, same version, the
text vectors reused. The OCR of figures is how the text of a picture on a page that has a text
layer (a pasted scan, a screenshot, a labelled chart) is read; it works without a VLM too. While
the VLM is down the document is marked ``captions=pending`` and the next reconcile (or the
requeuer) adds them; images already captioned or read come from the cache.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal

from ingest.cache import ContentCache
from ingest.errors import FileChanged, OcrUnavailable, PermanentError, VlmUnavailable
from ingest.images import IMAGE_FILETYPES
from ingest.models import Chunk, Element, PreparedDocument
from ingest.readers import Readers
from ingest.stages import ocr
from ingest.stages.chunk import DocumentChunker
from ingest.stages.figures import Figure, FigureOptions, extract_figures
from ingest.stages.members import read_source
from ingest.stages.parse import ParseOptions
from ingest.stages.vlm import ImageCaptioner, caption_image
from ingest.text import is_cjk

log = logging.getLogger(__name__)

#: "captioned": every figure that could be captioned was; "off": no VLM configured;
#: "pending": the VLM was unavailable for some figures, whose captions must be added later
CaptionStatus = Literal["captioned", "off", "pending"]

#: the OCR of one image (Tesseract through the cache, for example); "" when it has no text
ImageReader = Callable[[bytes], str]


def document_figures(
    prepared: PreparedDocument, options: FigureOptions, max_file_bytes: int,
    readers: Readers | None = None,
) -> list[Figure]:  # fmt: skip
    """The figures of exactly the bytes that were parsed, re-read from the share.

    Figures travel as a path, never as image bytes through the queue: the worker that captions
    reads the file again (cheap) and refuses it if it changed since parsing (``FileChanged``:
    the newer version has its own task).
    """
    source = prepared.source
    content = read_source(source, max_file_bytes, readers)  # a file, or an attachment in one
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


#: the formats whose pictures are extracted
FIGURE_FILETYPES = frozenset({"pdf", "docx", "pptx"}) | IMAGE_FILETYPES


@dataclass
class FigureCaptioner:
    #: the VLM; None: captions are off (recorded as such), figures are only OCR'd
    captioner: ImageCaptioner | None
    cache: ContentCache | None
    options: FigureOptions
    max_file_bytes: int
    chunker: DocumentChunker | None = None
    #: OCR of the figures with the share's languages; None: figures are not OCR'd
    parse: ParseOptions | None = None
    #: how the shares' files are read again (each share's Source's reader)
    readers: Readers = field(default_factory=Readers)

    def wants(self, doc: PreparedDocument) -> bool:
        return doc.parsed.filetype in FIGURE_FILETYPES

    def run(self, doc: PreparedDocument) -> tuple[list[Chunk], CaptionStatus]:
        """Caption chunks numbered after the document's own; FileChanged if it moved on."""
        if self.captioner is None and doc.parsed.filetype in IMAGE_FILETYPES:
            return [], "off"  # its own OCR is the document's text already
        figures = document_figures(doc, self.options, self.max_file_bytes, self.readers)
        if not figures:
            return [], "captioned" if self.captioner else "off"
        return caption_figures(
            doc, figures, self.captioner, self.cache,
            ocr=self._reader(doc.source.share), chunker=self.chunker,
        )  # fmt: skip

    def _reader(self, share: str) -> ImageReader | None:
        if self.parse is None or not self.parse.ocr.enabled:
            return None
        options = self.parse.for_share(share)

        def read(data: bytes) -> str:
            return ocr.image_text(data, options.languages, options.ocr, self.cache, "figure")

        return read
