"""The text layer of a PDF by pdfium: paragraphs rebuilt from the positions of its text lines.

unstructured's fast strategy reads the text layer with pdfminer, which builds a Python object per
character and analyses the layout in Python: about 150 ms for a five-page report, more than half
of all the parsing of a mixed share. pdfium (the PDF engine of Chromium, already here for
rendering scans) gives the same text with the rectangle of each run of text, 20 to 30 times
faster. Runs are joined into lines, and lines into blocks by pdfminer's own rule (the next line
starts within half a line height below the last one and overlaps it horizontally); each block is
then classified exactly as unstructured classifies pdfminer's text boxes (``element_from_text``:
title, narrative text, list item).

Two things differ from the pdfminer path, on purpose. A block in the top or bottom band of the
page is page furniture (dropped) only when its text, numbers aside, repeats on another page or is
a page number: a first line of text that merely starts high on the page is content (pdfminer's
path drops it by position alone). And vertical writing (Japanese 縦書き, or a label turned
sideways) reads as text, column by column, where pdfminer's path returns one character at a time
("油 圧 プ レ ス").
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from ingest.pdfium import open_pdf, pdfium
from ingest.text import CJK_CHAR

log = logging.getLogger(__name__)

#: pdfminer's LAParams.line_margin: lines closer than this many line heights form one block
LINE_MARGIN = 0.5
#: the bands where running headers and footers sit (unstructured's thresholds)
HEADER_BAND, FOOTER_BAND = 0.07, 0.93

_PAGE_NUMBER = re.compile(
    r"^\W*(page|p\.|ページ)?\s*\d+(\s*(/|of)\s*\d+)?\s*(ページ|頁)?\W*$", re.I
)
_DIGITS = re.compile(r"\d+")


@dataclass
class _Line:
    left: float
    bottom: float
    right: float
    top: float
    #: a column of vertical writing (Japanese 縦書き), or text turned sideways
    vertical: bool = False
    parts: list[str] = field(default_factory=list)

    @property
    def size(self) -> float:
        """The line's height; a vertical line's width."""
        return self.right - self.left if self.vertical else self.top - self.bottom

    def takes(self, run: _Line) -> bool:
        """A run continues this line: it sits on it and goes on in its direction."""
        if run.vertical != self.vertical:
            return False
        if self.vertical:
            middle = (run.left + run.right) / 2
            return self.left <= middle <= self.right and run.top <= self.bottom + self.size
        middle = (run.bottom + run.top) / 2
        return self.bottom <= middle <= self.top and run.left >= self.right - self.size

    def add(self, run: _Line) -> None:
        self.parts += run.parts
        self.left, self.right = min(self.left, run.left), max(self.right, run.right)
        self.bottom, self.top = min(self.bottom, run.bottom), max(self.top, run.top)


@dataclass
class _Block:
    page: int
    lines: list[_Line]

    @property
    def text(self) -> str:
        """Lines joined by a space, as pdfminer's path joins them; none between Japanese.
        Columns of vertical writing read from right to left."""
        lines = self.lines
        if lines[0].vertical:
            lines = sorted(lines, key=lambda line: -line.right)
        out = ""
        for piece in (part for line in lines for part in line.parts):
            cjk = out and CJK_CHAR.match(out[-1]) and CJK_CHAR.match(piece[0])
            out += piece if cjk or not out else " " + piece
        return out

    def follows(self, line: _Line) -> bool:
        """pdfminer's rule: the line starts within half a line of the last one and overlaps it
        (for vertical writing: the next column, beside the last one)."""
        last = self.lines[-1]
        if line.vertical != last.vertical:
            return False
        margin = LINE_MARGIN * max(last.size, line.size)
        if line.vertical:
            gap = max(last.left - line.right, line.left - last.right)
            overlap = line.bottom < last.top and line.top > last.bottom
        else:
            gap = last.bottom - line.top
            overlap = line.left < last.right and line.right > last.left
        return -line.size / 2 <= gap <= margin and overlap


def pdf_blocks(data: bytes) -> tuple[list[_Block], list[tuple[float, float]]]:
    """Blocks of text in reading order, and each page's (width, height)."""
    blocks: list[_Block] = []
    sizes: list[tuple[float, float]] = []
    with pdfium():
        pdf = open_pdf(data)
        try:
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                try:
                    sizes.append(page.get_size())
                    lines = _lines(textpage)
                finally:
                    textpage.close()
                    page.close()
                for line in lines:
                    if blocks and blocks[-1].page == index + 1 and blocks[-1].follows(line):
                        blocks[-1].lines.append(line)
                    else:
                        blocks.append(_Block(index + 1, [line]))
        finally:
            pdf.close()
    return blocks, sizes


def _lines(textpage: Any) -> list[_Line]:
    """pdfium's runs of text (in the order of the page's content) joined into lines."""
    lines: list[_Line] = []
    for i in range(textpage.count_rects()):
        left, bottom, right, top = textpage.get_rect(i)
        text = textpage.get_text_bounded(left, bottom, right, top).strip()
        if not text:
            continue
        vertical = len(text) >= 2 and top - bottom > 2 * (right - left)
        run = _Line(left, bottom, right, top, vertical, [text])
        if lines and lines[-1].takes(run):
            lines[-1].add(run)
        else:
            lines.append(run)
    return lines


def _furniture(blocks: list[_Block], sizes: list[tuple[float, float]]) -> set[int]:
    """Indexes of the blocks that are running headers, footers or page numbers."""
    banded: dict[int, str] = {}
    for n, block in enumerate(blocks):
        height = sizes[block.page - 1][1]
        top = 1 - max(line.top for line in block.lines) / height  # from the top of the page
        bottom = 1 - min(line.bottom for line in block.lines) / height
        if bottom < HEADER_BAND or top > FOOTER_BAND:
            banded[n] = _DIGITS.sub("#", block.text.lower())
    pages: dict[str, set[int]] = {}
    for n, key in banded.items():
        pages.setdefault(key, set()).add(blocks[n].page)
    return {
        n for n, key in banded.items() if len(pages[key]) > 1 or _PAGE_NUMBER.match(blocks[n].text)
    }


def form_values(data: bytes) -> dict[int, list[str]]:
    """Values typed into a form's text and choice fields, by page. They live in the widgets, not
    in the page's content, so no text layer has them (unstructured's pdfminer path adds them
    the same way)."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if "/AcroForm" not in reader.root_object:
        return {}
    values: dict[int, list[str]] = {}
    for number, page in enumerate(reader.pages, start=1):
        for ref in page.get("/Annots") or []:
            widget = ref.get_object()
            if widget.get("/Subtype") != "/Widget":
                continue
            node, kind, value = widget, widget.get("/FT"), widget.get("/V")
            for _ in range(32):  # type and value may sit on a parent field
                if (kind is not None and value is not None) or "/Parent" not in node:
                    break
                node = node["/Parent"].get_object()
                kind, value = kind or node.get("/FT"), value or node.get("/V")
            if kind not in ("/Tx", "/Ch") or value is None:
                continue
            text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            if text.strip():
                values.setdefault(number, []).append(text.strip())
    return values


def partition_pdf_text(data: bytes, languages: list[str]) -> list[Any]:
    """unstructured elements of the text layer and the form fields, with their page numbers."""
    from unstructured.documents.elements import ElementMetadata
    from unstructured.partition.text import element_from_text

    blocks, sizes = pdf_blocks(data)
    furniture = _furniture(blocks, sizes)
    texts: dict[int, list[str]] = {}
    for n, block in enumerate(blocks):
        text = re.sub(r"\s+", " ", block.text).strip()
        if n not in furniture and text:
            texts.setdefault(block.page, []).append(text)
    try:
        forms = form_values(data)
    except Exception as exc:  # a broken form costs its field values, not the document's text
        log.warning("form fields of a PDF not read: %s: %s", type(exc).__name__, exc)
        forms = {}
    for page, values in forms.items():
        texts.setdefault(page, []).extend(values)
    elements = []
    for page in sorted(texts):
        for text in texts[page]:
            element = element_from_text(text)
            element.metadata = ElementMetadata(page_number=page, languages=languages)
            elements.append(element)
    return elements
