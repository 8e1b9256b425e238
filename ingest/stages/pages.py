"""Pages read as pictures: scans, photos, and (in the VLM layout mode) any page, in one order.

A page image goes to the first of: the content cache (the same page read before: OCR text, or
the VLM's Markdown), the VLM (layout mode: the page transcribed to Markdown, tables and headings
kept), Tesseract. While the VLM is unavailable a page keeps its own text layer if it has one (never
a Tesseract reading of its pixels), else Tesseract stands in; either is marked provisional and
the page is read again by the VLM once it is back. A page the VLM refuses (4xx) is read the other
way for good. Scanned PDF pages are found by the text each page's layer holds.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ingest.cache import ContentCache, content_key
from ingest.errors import OcrIncomplete, PagesNeedGpu, VlmRejected, VlmUnavailable
from ingest.guards import check_pdf
from ingest.models import Element
from ingest.stages import ocr
from ingest.stages.ocr import OcrOptions
from ingest.stages.vlm import CAPTION_VERSION, PageTranscriber
from ingest.text import normalize_space

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageOptions:
    """What reading a page needs (the page part of ``ParseOptions``)."""

    languages: tuple[str, ...] = ("eng", "jpn")
    ocr: OcrOptions = field(default_factory=OcrOptions)
    cache: ContentCache | None = field(default=None, compare=False, repr=False)
    #: the VLM layout mode: pages to the VLM as Markdown instead of Tesseract
    page_transcriber: PageTranscriber | None = field(default=None, compare=False, repr=False)
    #: the layout mode reads every PDF page, text layer or not; else scanned pages only
    layout_all_pages: bool = False
    #: False: pages not in the cache are not transcribed here (PagesNeedGpu)
    transcribe_here: bool = True


def read_image(data: bytes, filetype: str, options: PageOptions) -> list[Element]:
    what = f"{filetype.upper()} image"
    if options.page_transcriber is not None:  # the layout mode: an image is a page
        pages = list(ocr.image_pages(data, what))
        elements: list[Element] = []
        for number, png in enumerate(pages, start=1):
            page = number if len(pages) > 1 else None
            cached = _cached_page(png, None, page, options)
            elements += cached if cached is not None else _read_page(png, None, page, options)
        return elements
    if not options.ocr.enabled:
        ocr.image_pages(data, what)  # still refuse a corrupt image with its reason
        return []
    return ocr.ocr_image(data, options.languages, options.ocr, options.cache, what)


def with_read_pages(data: bytes, elements: list[Element], options: PageOptions) -> list[Element]:
    """The text-layer elements, with OCR elements in place of pages that have no text layer."""
    extracted: dict[int, int] = {}
    for el in elements:
        if el.page_number is not None:
            extracted[el.page_number] = extracted.get(el.page_number, 0) + len(el.text.strip())
    pages = ocr.pdf_pages_to_ocr(data, options.ocr, extracted)
    scanned = set(pages)
    if options.page_transcriber is not None and options.layout_all_pages:
        pages = list(range(1, check_pdf(data) + 1))  # text layers too: the VLM reads the layout
    if not pages:
        return elements
    if len(pages) > options.ocr.max_pages:
        log.warning("OCR of %d pages limited to %d", len(pages), options.ocr.max_pages)
        pages = pages[: options.ocr.max_pages]
    read = set(pages)
    kept = [el for el in elements if el.page_number not in read]
    # a page with a text layer keeps it while the VLM is unavailable (never Tesseract)
    text_layers = {n: [el for el in elements if el.page_number == n] for n in read - scanned}
    added = _read_pages(data, pages, options, text_layers)
    # stable sort: each page's elements stay in reading order
    return sorted(kept + added, key=lambda el: el.page_number or 0)


def _read_pages(
    data: bytes,
    pages: Sequence[int],
    options: PageOptions,
    text_layers: Mapping[int, list[Element]] | None = None,
) -> list[Element]:
    """OCR (or VLM) elements of the given pages, within the OCR time budget.

    A long scan that would outlast the parse time limit stops at the budget with a transient
    error: the pages read so far are in the cache, so each attempt reads pages the one before
    did not (pages from the cache do not count against the budget) and none is read twice.
    """
    budget = options.ocr.time_budget_s if options.cache is not None else None
    spent = 0.0
    elements: list[Element] = []
    rendered = ocr.render_pdf_pages(data, pages, options.ocr)
    for done, (number, (png, dpi)) in enumerate(zip(pages, rendered, strict=True), start=1):
        cached = _cached_page(png, dpi, number, options)
        if cached is not None:
            elements += cached
            continue
        started = time.monotonic()
        elements += _read_page(png, dpi, number, options, (text_layers or {}).get(number))
        spent += time.monotonic() - started
        if budget is not None and done < len(pages) and spent > budget:
            raise OcrIncomplete(
                f"OCR read {done} of {len(pages)} scanned pages within {budget:g} s; "
                "the rest is read on the next attempt (pages read are cached)"
            )
    return elements


def _cached_page(
    png: bytes, dpi: int | None, number: int | None, options: PageOptions
) -> list[Element] | None:
    cache, transcriber = options.cache, options.page_transcriber
    if cache is None:
        return None
    if transcriber is not None:
        try:
            markdown = cache.get(layout_key(transcriber, png))
        except (VlmUnavailable, VlmRejected):  # the model name could not be asked for
            return None
        return markdown_elements(markdown, number) if markdown is not None else None
    text = cache.get(ocr.ocr_key(png, options.languages, options.ocr, dpi))
    return ocr.text_elements(text, number) if text is not None else None


def _read_page(
    png: bytes,
    dpi: int | None,
    number: int | None,
    options: PageOptions,
    text_layer: list[Element] | None = None,
) -> list[Element]:
    if options.page_transcriber is not None:
        if not options.transcribe_here:
            raise PagesNeedGpu(
                "pages to transcribe by the VLM: parsed by a worker of the gpu queue"
            )
        try:
            markdown = transcribe_page(options.page_transcriber, png, options.cache)
            return markdown_elements(markdown, number)
        except VlmRejected as exc:  # this page only, for good: read it otherwise
            log.warning("page %s not transcribed by the VLM: %s", number or 1, exc)
            if text_layer is not None:
                return text_layer
            if not options.ocr.enabled:
                raise
        except VlmUnavailable as exc:  # for now: read it otherwise, and again when it is back
            if text_layer is None and not options.ocr.enabled:
                raise
            log.warning("page %s read without the VLM for now: %s", number or 1, exc)
            stand_in = text_layer or _ocr_page(png, dpi, number, options)
            return [replace(el, provisional=True) for el in stand_in]
    return _ocr_page(png, dpi, number, options)


def _ocr_page(
    png: bytes, dpi: int | None, number: int | None, options: PageOptions
) -> list[Element]:
    text = ocr.read_png(png, options.languages, options.ocr, options.cache, dpi=dpi)
    return ocr.text_elements(text, number)


# -- the VLM's transcription, through the cache ------------------------------------------------


def layout_key(transcriber: PageTranscriber, page_png: bytes) -> str:
    return content_key("layout", page_png, transcriber.cache_tag("layout"), CAPTION_VERSION)


def transcribe_page(
    transcriber: PageTranscriber, page_png: bytes, cache: ContentCache | None = None
) -> str:
    key = layout_key(transcriber, page_png)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    text = transcriber.transcribe_page(page_png)
    if cache is not None:
        cache.put(key, text)
    return text


# -- the transcription's Markdown as elements -----------------------------------------------------

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_FENCE = re.compile(r"^\s*```")


def markdown_elements(markdown: str, page: int | None) -> list[Element]:
    """Headings, paragraphs, list items and tables of a VLM's Markdown transcription."""
    elements: list[Element] = []
    paragraph: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if paragraph:
            text = normalize_space("\n".join(paragraph))
            if text:
                elements.append(Element(kind="text", text=text, page_number=page))
            paragraph.clear()
        if table:
            elements.append(_table_element(table, page))
            table.clear()

    for line in markdown.splitlines():
        if _FENCE.match(line):  # some models wrap the whole answer in ```markdown
            continue
        if line.strip().startswith("|"):
            if paragraph:
                flush()
            table.append(line)
            continue
        if table or not line.strip():
            flush()
        if not line.strip():
            continue
        if heading := _HEADING.match(line):
            flush()
            elements.append(Element(kind="title", text=heading.group(1), page_number=page))
        elif item := _LIST_ITEM.match(line):
            flush()
            elements.append(Element(kind="list_item", text=item.group(1).strip(), page_number=page))
        else:
            paragraph.append(line)
    flush()
    return [e for e in elements if e.text.strip()]


def _table_element(lines: list[str], page: int | None) -> Element:
    rows = tuple(
        tuple(cell.strip() for cell in line.strip().strip("|").split("|"))
        for line in lines
        if not _TABLE_RULE.match(line)
    )
    text = "\n".join(" | ".join(row) for row in rows)
    return Element(kind="table", text=text, page_number=page, rows=rows or None)
