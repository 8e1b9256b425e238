"""Figure extraction: the pictures embedded in PDF, DOCX and PPTX files, and standalone images.

A function of the file's bytes and type only, cheap (no rendering, no models): a GPU worker that
captions re-extracts the figures from the file rather than receiving image bytes through the
queue. Small pictures (icons, bullets, rules) are dropped by pixel size and by the share of the
page they cover; a picture repeated on many pages (a logo in a template) is page furniture; a PDF
picture covering (almost) the whole page is a scan or a background, which page OCR reads.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ingest.errors import CorruptDocument
from ingest.guards import ZIP_FORMATS, check_zip_container
from ingest.images import IMAGE_FILETYPES, first_frame, probe_size, to_png
from ingest.pdfium import open_pdf, pdfium
from ingest.text import normalize_space

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "BMP": "image/bmp",
         "TIFF": "image/tiff", "WEBP": "image/webp", "MPO": "image/jpeg"}  # fmt: skip
_EMU_PER_TWIP = 635
_LETTER_TWIPS = (12240, 15840)


@dataclass(frozen=True)
class FigureOptions:
    min_side_px: int = 64
    #: share of the page (or slide) a picture must cover to be a figure rather than decoration
    min_area_ratio: float = 0.015
    #: a PDF picture covering more than this is a scanned page or a background
    max_pdf_area_ratio: float = 0.85
    #: a picture on this many pages or more is a logo or a template decoration
    repeat_pages: int = 3
    max_figures: int = 200
    max_uncompressed_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Figure:
    data: bytes
    mime: str
    sha256: str
    width: int
    height: int
    #: 1-based page (PDF) or slide (PPTX); None for DOCX (no pages before layout) and images
    page: int | None
    #: the heading or slide title above the picture, where the format says so cheaply
    section: str | None
    #: share of the page the picture covers; None where there is no page
    area_ratio: float | None = None


@dataclass(frozen=True)
class _Candidate:
    raw: bytes  # the bytes as stored in the file: equal pictures compare equal
    page: int | None
    section: str | None
    area_ratio: float | None
    width: int
    height: int


def extract_figures(
    data: bytes, filetype: str, options: FigureOptions | None = None
) -> list[Figure]:
    """The figures of one file, in document order; an empty list for formats without pictures."""
    options = options or FigureOptions()
    if filetype in ZIP_FORMATS:
        check_zip_container(data, filetype, options.max_uncompressed_bytes)
    if filetype in IMAGE_FILETYPES:
        return _standalone(data, filetype, options)
    readers = {"pdf": _pdf_candidates, "docx": _docx_candidates, "pptx": _pptx_candidates}
    if filetype not in readers:
        return []
    candidates = [c for c in readers[filetype](data) if _big_enough(c, options, filetype)]
    figures = []
    for candidate in _without_repeats(candidates, options):
        figure = _to_figure(candidate)
        if figure is not None:
            figures.append(figure)
        if len(figures) >= options.max_figures:
            break
    return figures


def _standalone(data: bytes, filetype: str, options: FigureOptions) -> list[Figure]:
    img = first_frame(data, f"{filetype.upper()} image")
    if min(img.size) < options.min_side_px:
        return []
    format_ = (probe_size(data) or (0, 0, ""))[2]
    mime = _MIME.get(format_, "image/png")
    digest = hashlib.sha256(data).hexdigest()
    return [Figure(data, mime, digest, img.size[0], img.size[1], None, None, None)]


def _big_enough(c: _Candidate, options: FigureOptions, filetype: str) -> bool:
    if min(c.width, c.height) < options.min_side_px:
        return False
    if c.area_ratio is None:
        return True
    if filetype == "pdf" and c.area_ratio > options.max_pdf_area_ratio:
        return False
    return c.area_ratio >= options.min_area_ratio


def _without_repeats(candidates: list[_Candidate], options: FigureOptions) -> Iterator[_Candidate]:
    """First occurrence of each picture; none of a picture repeated on many pages."""
    pages: dict[bytes, set[int | None]] = {}
    for c in candidates:
        pages.setdefault(hashlib.sha256(c.raw).digest(), set()).add(c.page)
    seen: set[bytes] = set()
    for c in candidates:
        digest = hashlib.sha256(c.raw).digest()
        if digest in seen or len(pages[digest]) >= options.repeat_pages:
            continue
        seen.add(digest)
        yield c


def _to_figure(c: _Candidate) -> Figure | None:
    """Web-friendly bytes: PNG and JPEG as stored, anything else converted to PNG."""
    probed = probe_size(c.raw)
    if probed is not None and probed[2] in ("PNG", "JPEG"):
        data, mime = c.raw, _MIME[probed[2]]
    else:
        try:
            data, mime = to_png(first_frame(c.raw)), "image/png"
        except CorruptDocument:  # a vector format (EMF, WMF) or a damaged picture: no figure
            return None
    digest = hashlib.sha256(data).hexdigest()
    return Figure(data, mime, digest, c.width, c.height, c.page, c.section, c.area_ratio)


# -- PDF ------------------------------------------------------------------------------------------


def _pdf_candidates(data: bytes) -> Iterator[_Candidate]:
    """Each page's pictures, read under the pdfium lock one page at a time (the document stays
    open between pages; other threads use pdfium in between)."""
    import pypdfium2.raw as pdfium_c

    pdf = None
    try:
        index = 0
        while True:
            with pdfium():
                if pdf is None:
                    pdf = open_pdf(data)
                if index >= len(pdf):
                    return
                page = pdf[index]
                try:
                    width, height = page.get_size()
                    found = [
                        c
                        for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])
                        for c in _pdf_image(obj, width * height)
                    ]
                finally:
                    page.close()
            for pil, area, px_w, px_h in found:  # PNG encoding outside the lock
                yield _Candidate(to_png(pil), index + 1, None, area, px_w, px_h)
            index += 1
    finally:
        if pdf is not None:
            with pdfium():
                pdf.close()


def _pdf_image(obj: Any, page_area: float) -> list[tuple[Any, float | None, int, int]]:
    """The picture of one image object, copied out of pdfium (inside the pdfium lock), with
    the share of the page it covers and its pixel size."""
    left, bottom, right, top = obj.get_bounds()
    px_w, px_h = obj.get_px_size()
    if min(px_w, px_h) <= 0:
        return []
    area = max(0.0, (right - left) * (top - bottom)) / page_area if page_area else None
    try:
        bitmap = obj.get_bitmap(render=False)
    except Exception:  # an image pdfium cannot decode is skipped, the text is still indexed
        return []
    try:
        pil = bitmap.to_pil().copy()  # to_pil shares pdfium's buffer, freed by close()
    except Exception:
        return []
    finally:
        bitmap.close()
    return [(pil, area, px_w, px_h)]


# -- DOCX -----------------------------------------------------------------------------------------

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_WP = "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"
_A = "http://schemas.openxmlformats.org/drawingml/2006/main"
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"


def _xml(data: bytes) -> Any:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    return etree.fromstring(data, parser)


def _docx_candidates(data: bytes) -> Iterator[_Candidate]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        if "word/document.xml" not in names:
            raise CorruptDocument("not a valid DOCX file (no word/document.xml)")
        targets = _relationships(zf, "word/_rels/document.xml.rels", "word/")
        root = _xml(zf.read("word/document.xml"))
        page_w, page_h = _docx_page_size(root)
        section = None
        for el in root.iter(f"{{{_W}}}p", f"{{{_WP}}}inline", f"{{{_WP}}}anchor"):
            if el.tag == f"{{{_W}}}p":
                section = _docx_heading(el) or section
                continue
            target = _docx_image_target(el, targets)
            if target is None or target not in names:
                continue
            raw = zf.read(target)
            probed = probe_size(raw)
            if probed is None:
                continue
            area = _docx_area(el, page_w * page_h)
            yield _Candidate(raw, None, section, area, probed[0], probed[1])


def _relationships(zf: zipfile.ZipFile, rels_path: str, base: str) -> dict[str, str]:
    if rels_path not in zf.namelist():
        return {}
    out = {}
    for rel in _xml(zf.read(rels_path)).iter(f"{{{_PKG_REL}}}Relationship"):
        if rel.get("TargetMode") == "External":  # a linked picture: not in the file
            continue
        target = rel.get("Target", "")
        out[rel.get("Id", "")] = target.lstrip("/") if target.startswith("/") else base + target
    return out


def _docx_page_size(root: Any) -> tuple[int, int]:
    sizes = list(root.iter(f"{{{_W}}}pgSz"))
    if not sizes:
        return _LETTER_TWIPS[0] * _EMU_PER_TWIP, _LETTER_TWIPS[1] * _EMU_PER_TWIP
    size = sizes[-1]
    width = int(size.get(f"{{{_W}}}w", _LETTER_TWIPS[0]))
    height = int(size.get(f"{{{_W}}}h", _LETTER_TWIPS[1]))
    return width * _EMU_PER_TWIP, height * _EMU_PER_TWIP


def _docx_heading(paragraph: Any) -> str | None:
    style = paragraph.find(f"{{{_W}}}pPr/{{{_W}}}pStyle")
    name = (style.get(f"{{{_W}}}val", "") if style is not None else "").lower()
    if not (name.startswith("heading") or name == "title"):
        return None
    text = "".join(t.text or "" for t in paragraph.iter(f"{{{_W}}}t"))
    return normalize_space(text) or None


def _docx_image_target(drawing: Any, targets: dict[str, str]) -> str | None:
    blip = next(drawing.iter(f"{{{_A}}}blip"), None)
    rel_id = blip.get(f"{{{_R}}}embed") if blip is not None else None
    return targets.get(rel_id) if rel_id else None


def _docx_area(drawing: Any, page_area: int) -> float | None:
    extent = drawing.find(f"{{{_WP}}}extent")
    if extent is None or not page_area:
        return None
    try:
        return int(extent.get("cx", 0)) * int(extent.get("cy", 0)) / page_area
    except ValueError:
        return None


# -- PPTX -----------------------------------------------------------------------------------------


def _pptx_candidates(data: bytes) -> Iterator[_Candidate]:
    from pptx import Presentation

    try:
        prs = Presentation(io.BytesIO(data))
    except Exception as exc:  # python-pptx raises many kinds on broken packages
        raise CorruptDocument(f"not a valid PPTX file ({type(exc).__name__}: {exc})") from exc
    slide_area = int(prs.slide_width or 0) * int(prs.slide_height or 0)
    for number, slide in enumerate(prs.slides, start=1):
        title_shape = slide.shapes.title
        title = normalize_space(title_shape.text_frame.text) if title_shape is not None else ""
        for shape in _pictures(slide.shapes):
            try:
                blob = shape.image.blob
            except (AttributeError, KeyError, ValueError):  # a linked or empty picture
                continue
            probed = probe_size(blob)
            if probed is None:
                continue
            area = (
                int(shape.width or 0) * int(shape.height or 0) / slide_area if slide_area else None
            )
            yield _Candidate(blob, number, title or None, area, probed[0], probed[1])


def _pictures(shapes: Any) -> Iterator[Any]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _pictures(shape.shapes)
        elif hasattr(shape, "image"):
            yield shape
