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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ingest.archives import TAR_SUFFIXES
from ingest.cache import ContentCache
from ingest.errors import (
    CorruptDocument,
    EmptyDocument,
    IngestError,
    ParserCrashed,
    UnsupportedType,
)
from ingest.guards import (
    ZIP_FORMATS,
    FileContent,
    check_pdf,
    check_zip_container,
    decode_text,
)
from ingest.images import IMAGE_FILETYPES
from ingest.models import Element, ElementKind, ParsedDocument, SourceFile
from ingest.readers import Readers
from ingest.stages.markup import partition_epub, partition_org, partition_rst, partition_xml
from ingest.stages.ocr import OcrOptions
from ingest.stages.office import CONVERTED, convert
from ingest.stages.pages import PageOptions, read_image, with_read_pages
from ingest.stages.vlm import PageTranscriber
from ingest.text import is_cjk, normalize_space

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "txt": "txt", "text": "txt", "log": "txt",
    "md": "md", "markdown": "md",
    "html": "html", "htm": "html",
    "pdf": "pdf",
    "docx": "docx", "pptx": "pptx", "xlsx": "xlsx",
    "csv": "csv", "tsv": "csv",
    "eml": "eml", "msg": "msg",  # messages: ingest.stages.members
    "zip": "zip", "tar": "tar", "tgz": "tar", "tbz2": "tar", "txz": "tar",  # archives: same
    "json": "json",
    "epub": "epub", "rst": "rst", "rest": "rst", "org": "org", "xml": "xml",  # stages.markup
    "png": "png", "jpg": "jpeg", "jpeg": "jpeg", "tif": "tiff", "tiff": "tiff",
    "bmp": "bmp", "webp": "webp", "heic": "heic", "heif": "heic",
    **{extension: extension for extension in CONVERTED},  # through LibreOffice
}  # fmt: skip

#: converted formats that are zip containers themselves
_ZIPPED = frozenset({"docm", "dotm", "dotx", "xlsm", "xltm", "xltx", "pptm", "potm", "potx",
                     "ppsx", "odt", "ott", "ods", "ots", "odp", "otp"})  # fmt: skip

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
    #: time limit of one LibreOffice conversion (legacy Office, RTF, OpenDocument)
    convert_timeout_s: float = 100.0
    #: documents inside one file (attachments, archive members, nested ones included)
    max_members: int = 10_000
    #: containers inside containers (a zip attached to a message: 2)
    max_container_depth: int = 3
    #: how each share's files are read (its Source's reader; a location not given: a folder)
    readers: Readers = field(default_factory=Readers, compare=False, repr=False)

    def read(self, source: SourceFile, max_bytes: int | None = None) -> FileContent:
        """The bytes of ``source``'s file, through its share's reader."""
        limit = self.max_file_bytes if max_bytes is None else max_bytes
        return self.readers.read(source.root, source.path, limit)

    @property
    def pages(self) -> PageOptions:
        return PageOptions(
            languages=self.languages, ocr=self.ocr, cache=self.cache,
            page_transcriber=self.page_transcriber, layout_all_pages=self.layout_all_pages,
            transcribe_here=self.transcribe_here,
        )  # fmt: skip

    def for_share(self, share: str) -> ParseOptions:
        languages = dict(self.languages_by_share).get(share)
        return replace(self, languages=languages) if languages else self


def filetype_of(path: str) -> str:
    """The parser for a path, by its extension; raises UnsupportedType."""
    name = path.rsplit("/", 1)[-1]
    if name.lower().endswith(TAR_SUFFIXES):
        return "tar"
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    filetype = FORMATS.get(extension)
    if filetype is None:
        what = f".{extension}" if extension else "no extension"
        why = _NOT_READ.get(extension)
        raise UnsupportedType(f"unsupported file type ({what})" + (f": {why}" if why else ""))
    return filetype


def format_name(path: str) -> str:
    """What ``status`` counts a file as: its parser, or ``.ext`` for a type that is not read."""
    try:
        return filetype_of(path)
    except UnsupportedType:
        name = path.rsplit("#", 1)[-1].rsplit("/", 1)[-1]
        return ("." + name.rsplit(".", 1)[-1].lower())[:16] if "." in name else "(none)"


#: why some common types of a file server are not read
_NOT_READ = {
    **dict.fromkeys(("7z", "rar", "lzh", "cab"), "this archive format is not opened (zip and tar are)"),
    **dict.fromkeys(("pst", "ost"), "Outlook data files are not opened; export messages as .msg"),
    **dict.fromkeys(("exe", "dll", "msi", "sys", "bat", "ps1"), "a program, not a document"),
    **dict.fromkeys(("mp3", "wav", "mp4", "mov", "avi", "wmv", "m4a"), "audio and video are not transcribed"),
    **dict.fromkeys(("dwg", "dxf", "vsd", "vsdx", "one"), "drawings and notebooks of this kind are not read"),
}  # fmt: skip


def parse(source: SourceFile, options: ParseOptions) -> ParsedDocument:
    """Read and parse one file; raises an IngestError subclass on bad input."""
    filetype = filetype_of(source.path)
    options = options.for_share(source.share)
    content = options.read(source)
    return parse_content(content.data, content.mtime_ns, filetype, source.path, options)


def parse_content(
    data: bytes, mtime_ns: int, filetype: str, name: str, options: ParseOptions
) -> ParsedDocument:
    """Parse bytes read from a file (or a member of one) named ``name``."""
    elements = tuple(parse_bytes(data, filetype, options))
    if not elements and filetype in IMAGE_FILETYPES and options.keep_textless_images:
        # the caption will say what the image shows; until then the name is all there is
        elements = (Element(kind="title", text=name.rsplit("/", 1)[-1]),)
    if not elements:
        raise EmptyDocument(_no_text_reason(data, filetype, options))
    return ParsedDocument(
        content_hash=hashlib.sha256(data).hexdigest(),
        size=len(data),
        mtime_ns=mtime_ns,
        elements=elements,
        filetype=filetype,
        vlm_pending=any(el.provisional for el in elements),
    )


def parse_bytes(data: bytes, filetype: str, options: ParseOptions) -> list[Element]:
    if filetype in CONVERTED:  # read as the modern format LibreOffice makes of it
        if filetype in _ZIPPED:  # OOXML and OpenDocument are zips: bombs checked first
            check_zip_container(data, filetype, options.max_uncompressed_bytes)
        data, filetype = convert(data, filetype, options.convert_timeout_s), CONVERTED[filetype]
    if filetype in ZIP_FORMATS:
        check_zip_container(data, filetype, options.max_uncompressed_bytes)
    if filetype == "pdf":
        check_pdf(data)
    if filetype == "json":
        return list(_json_elements(decode_text(data)))
    if filetype in IMAGE_FILETYPES:
        return read_image(data, filetype, options.pages)
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
        elements = with_read_pages(data, elements, options.pages)
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


_PARTITIONERS: dict[str, Callable[[bytes, ParseOptions], list[Any]]] = {
    "txt": _partition_text,
    "md": _partition_md,
    "html": _partition_html,
    "pdf": _partition_pdf,
    "docx": _partition_docx,
    "pptx": _partition_pptx,
    "xlsx": _partition_xlsx,
    "csv": _partition_csv,
    "epub": partition_epub,
    "rst": partition_rst,
    "org": partition_org,
    "xml": partition_xml,
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
