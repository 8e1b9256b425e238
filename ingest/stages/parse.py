"""Parse stage: bytes of one file -> structural elements, through unstructured and OCR.

Each format goes to its own unstructured partitioner (no guessing from content: a junk file named
``.docx`` must fail as a bad DOCX, not be parsed as something else). Generic JSON, which
unstructured only reads in its own serialisation, is flattened here.

Images are read by OCR. A PDF keeps the fast text extraction for pages with a text layer and OCRs
only the pages without one (scans), page by page, through the content cache. With a page
transcriber (the VLM layout mode) those pages, and images, go to the VLM for Markdown instead, and
back to Tesseract while the VLM is unavailable, so that a document's text is never held back by
the GPU. Where pages are not to be transcribed here (``transcribe_here`` off: a cpu-queue worker),
a page missing from the cache raises PagesNeedGpu and the document goes to the gpu queue.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ingest.cache import ContentCache
from ingest.errors import (
    CorruptDocument,
    EmptyDocument,
    IngestError,
    OcrIncomplete,
    PagesNeedGpu,
    ParserCrashed,
    UnsupportedType,
    VlmRejected,
    VlmUnavailable,
)
from ingest.guards import (
    ZIP_FORMATS,
    check_pdf,
    check_zip_container,
    decode_text,
    read_file_in_share,
)
from ingest.images import IMAGE_FILETYPES
from ingest.models import Element, ElementKind, ParsedDocument, SourceFile
from ingest.stages import ocr
from ingest.stages.ocr import OcrOptions
from ingest.stages.vlm import (
    PageTranscriber,
    layout_key,
    markdown_elements,
    transcribe_page,
)
from ingest.text import is_cjk, normalize_space

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "txt": "txt", "text": "txt", "log": "txt",
    "md": "md", "markdown": "md",
    "html": "html", "htm": "html",
    "pdf": "pdf",
    "docx": "docx", "pptx": "pptx", "xlsx": "xlsx",
    "csv": "csv", "tsv": "csv",
    "eml": "eml",
    "json": "json",
    "png": "png", "jpg": "jpeg", "jpeg": "jpeg", "tif": "tiff", "tiff": "tiff",
    "bmp": "bmp", "webp": "webp",
}  # fmt: skip

_KINDS: dict[str, ElementKind] = {
    "Title": "title",
    "ListItem": "list_item",
    "Table": "table",
    "CodeSnippet": "code",
}
# Page furniture and non-text elements: repeated on every page or empty of meaning.
_DROP = frozenset({"Header", "Footer", "PageNumber", "PageBreak", "Image", "Picture"})


@dataclass(frozen=True)
class ParseOptions:
    max_file_bytes: int = 100 * 1024 * 1024
    max_uncompressed_bytes: int = 1024 * 1024 * 1024
    #: document languages: unstructured's hints and Tesseract's languages
    languages: tuple[str, ...] = ("eng", "jpn")
    #: share name -> languages, for shares that differ from ``languages``
    languages_by_share: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ocr: OcrOptions = field(default_factory=OcrOptions)
    #: an image with no text is still a document when captions will describe it (VLM on)
    keep_textless_images: bool = False
    #: the text layer of PDFs: "pdfium" (``pdftext``) or "pdfminer" (unstructured's fast strategy)
    pdf_text: str = "pdfium"
    #: OCR and VLM results by image hash; crosses into the parse process (must pickle)
    cache: ContentCache | None = field(default=None, compare=False, repr=False)
    #: the VLM layout mode: scanned pages to the VLM as Markdown instead of Tesseract
    page_transcriber: PageTranscriber | None = field(default=None, compare=False, repr=False)
    #: the layout mode reads every PDF page, text layer or not (two-column papers, tables and
    #: specification layouts whose text layer reads in the wrong order); else scanned pages only
    layout_all_pages: bool = False
    #: False: pages not in the cache are not transcribed here; PagesNeedGpu hands the document
    #: to a worker of the gpu queue (a cpu-queue worker of the distributed mode)
    transcribe_here: bool = True

    def for_share(self, share: str) -> ParseOptions:
        languages = dict(self.languages_by_share).get(share)
        return replace(self, languages=languages) if languages else self


def filetype_of(path: str) -> str:
    """The parser for a path, by its extension; raises UnsupportedType."""
    name = path.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    filetype = FORMATS.get(extension)
    if filetype is None:
        raise UnsupportedType(
            f"unsupported file type ({'.' + extension if extension else 'no extension'})"
        )
    return filetype


def parse(source: SourceFile, options: ParseOptions) -> ParsedDocument:
    """Read and parse one file; raises an IngestError subclass on bad input."""
    filetype = filetype_of(source.path)
    options = options.for_share(source.share)
    content = read_file_in_share(source.root, source.path, options.max_file_bytes)
    data = content.data
    content_hash = hashlib.sha256(data).hexdigest()
    elements = tuple(parse_bytes(data, filetype, options))
    if not elements and filetype in IMAGE_FILETYPES and options.keep_textless_images:
        # the caption will say what the image shows; until then the name is all there is
        name = source.path.rsplit("/", 1)[-1]
        elements = (Element(kind="title", text=name),)
    if not elements:
        raise EmptyDocument(_no_text_reason(data, filetype, options))
    return ParsedDocument(
        content_hash=content_hash,
        size=len(data),
        mtime_ns=content.mtime_ns,
        elements=elements,
        filetype=filetype,
        vlm_pending=any(el.provisional for el in elements),
    )


def parse_bytes(data: bytes, filetype: str, options: ParseOptions) -> list[Element]:
    if filetype in ZIP_FORMATS:
        check_zip_container(data, filetype, options.max_uncompressed_bytes)
    if filetype == "pdf":
        check_pdf(data)
    if filetype == "json":
        return list(_json_elements(decode_text(data)))
    if filetype in IMAGE_FILETYPES:
        return _image_elements(data, filetype, options)
    try:
        raw = _PARTITIONERS[filetype](data, options)
    except IngestError:
        raise
    except MemoryError as exc:
        raise ParserCrashed("the parser ran out of memory") from exc
    except Exception as exc:
        raise CorruptDocument(
            f"{filetype.upper()} parser failed: {type(exc).__name__}: {exc}"
        ) from exc
    elements = [el for el in (_convert(e) for e in raw) if el is not None]
    if filetype == "pdf" and options.ocr.enabled:
        elements = _with_ocr_pages(data, elements, options)
    return elements


def _no_text_reason(data: bytes, filetype: str, options: ParseOptions) -> str:
    if filetype == "pdf":
        pages = check_pdf(data)
        if not options.ocr.enabled:
            return f"no text layer in {pages} PDF page(s) (a scan?); OCR is disabled"
        return f"no text in {pages} PDF page(s), and OCR recognised none"
    if filetype in IMAGE_FILETYPES:
        if not options.ocr.enabled:
            return f"{filetype.upper()} image: OCR is disabled and captioning is off"
        return f"no text recognised in this {filetype.upper()} image"
    return f"no text found in this {filetype.upper()} file"


def _image_elements(data: bytes, filetype: str, options: ParseOptions) -> list[Element]:
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


def _with_ocr_pages(data: bytes, elements: list[Element], options: ParseOptions) -> list[Element]:
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
    options: ParseOptions,
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
    png: bytes, dpi: int | None, number: int | None, options: ParseOptions
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
    options: ParseOptions,
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
    png: bytes, dpi: int | None, number: int | None, options: ParseOptions
) -> list[Element]:
    text = ocr.read_png(png, options.languages, options.ocr, options.cache, dpi=dpi)
    return ocr.text_elements(text, number)


def _partition_text(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.text import partition_text

    return partition_text(text=decode_text(data), languages=list(options.languages))


def _partition_md(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.md import partition_md

    return partition_md(text=decode_text(data), languages=list(options.languages))


def _partition_html(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.html import partition_html

    return partition_html(text=decode_text(data), languages=list(options.languages))


def _partition_pdf(data: bytes, options: ParseOptions) -> list[Any]:
    if options.pdf_text == "pdfium":
        from ingest.stages.pdftext import partition_pdf_text

        return partition_pdf_text(data, list(options.languages))
    from unstructured.partition.pdf import partition_pdf

    return partition_pdf(file=io.BytesIO(data), strategy="fast", languages=list(options.languages))


def _partition_docx(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.docx import partition_docx

    return partition_docx(file=io.BytesIO(data), languages=list(options.languages))


def _partition_pptx(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.pptx import partition_pptx

    return partition_pptx(file=io.BytesIO(data), languages=list(options.languages))


def _partition_xlsx(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.xlsx import partition_xlsx

    return partition_xlsx(file=io.BytesIO(data), languages=list(options.languages))


def _partition_csv(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.csv import partition_csv

    text = decode_text(data)
    return partition_csv(file=io.BytesIO(text.encode("utf-8")), languages=list(options.languages))


def _partition_eml(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.email import partition_email

    return partition_email(file=io.BytesIO(data), languages=list(options.languages))


_PARTITIONERS: dict[str, Callable[[bytes, ParseOptions], list[Any]]] = {
    "txt": _partition_text,
    "md": _partition_md,
    "html": _partition_html,
    "pdf": _partition_pdf,
    "docx": _partition_docx,
    "pptx": _partition_pptx,
    "xlsx": _partition_xlsx,
    "csv": _partition_csv,
    "eml": _partition_eml,
}


def _convert(raw: Any) -> Element | None:
    category = getattr(raw, "category", type(raw).__name__)
    if category in _DROP:
        return None
    text = normalize_space(str(getattr(raw, "text", "") or ""))
    if not text:
        return None
    kind = _KINDS.get(category, "text")
    page = getattr(raw.metadata, "page_number", None)
    if kind == "table":
        rows = table_rows(getattr(raw.metadata, "text_as_html", None))
        if rows:
            return Element(kind="table", text=text, page_number=page, rows=rows)
        kind = "text"
    if kind == "title" and not _looks_like_title(text):
        kind = "text"
    return Element(kind=kind, text=text, page_number=page)


def _looks_like_title(text: str) -> bool:
    """unstructured calls any short unspaced run a title, which is every Japanese paragraph."""
    if "\n" in text:
        return False
    if is_cjk(text):
        return len(text) <= 40 and not text.endswith(("。", "！", "？"))
    return len(text) <= 200


def table_rows(html: str | None) -> tuple[tuple[str, ...], ...] | None:
    """Cell texts per row from unstructured's ``text_as_html``."""
    if not html:
        return None
    import lxml.html

    try:
        tree = lxml.html.fromstring(html)
    except Exception:
        return None
    rows = []
    for tr in tree.iter("tr"):
        cells = tuple(
            normalize_space(td.text_content()).replace("\n", " ")
            for td in tr
            if td.tag in ("td", "th")
        )
        if any(cells):
            rows.append(cells)
    return tuple(rows) or None


def _json_elements(text: str) -> Iterator[Element]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptDocument(f"not valid JSON: {exc}") from exc
    lines = [f"{key}: {val}" if key else val for key, val in _flatten(value, "")]
    if lines:
        yield Element(kind="text", text="\n".join(lines))


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, val in value.items():
            yield from _flatten(val, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, val in enumerate(value):
            yield from _flatten(val, f"{prefix}[{i}]")
    elif value is not None and str(value).strip():
        yield prefix, str(value)
