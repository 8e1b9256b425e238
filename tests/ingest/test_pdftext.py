"""The pdfium text layer: the same paragraphs as unstructured's pdfminer path, running headers,
footers and page numbers dropped, and vertical writing left to pdfminer."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest

from ingest.models import Element
from ingest.stages.parse import ParseOptions, parse_bytes

PageDrawer = Callable[[Any, float, float], None]


@pytest.fixture(autouse=True, scope="module")
def offline_nlp() -> None:
    """unstructured's text classification, offline, as in a parse process."""
    from ingest import nlp_fallback

    nlp_fallback.install()


def _pdf(*pages: PageDrawer) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=1)
    for draw in pages:
        draw(pdf, *A4)
        pdf.showPage()
    pdf.save()
    return buf.getvalue()


def _lines(lines: list[str], x: float = 72, top: float = 120, pitch: float = 14) -> PageDrawer:
    """Lines from ``top`` points below the top of the page; "" leaves a blank line."""

    def draw(pdf: Any, width: float, height: float) -> None:
        pdf.setFont("Helvetica", 11)
        for i, line in enumerate(lines):
            pdf.drawString(x, height - top - pitch * i, line)

    return draw


def _both(*pages: PageDrawer) -> PageDrawer:
    def draw(pdf: Any, width: float, height: float) -> None:
        for d in pages:
            d(pdf, width, height)

    return draw


def _texts(elements: list[Element]) -> list[str]:
    return [el.text for el in elements]


def _parse(data: bytes, engine: str) -> list[Element]:
    return parse_bytes(data, "pdf", ParseOptions(pdf_text=engine))


def test_paragraphs_are_the_text_boxes_pdfminer_finds() -> None:
    page = _lines([
        "Quarterly Maintenance Report",
        "",
        "The hydraulic press was inspected on Monday and the seals were replaced by the",
        "night shift after the pressure alarm tripped twice during the weekend run.",
        "",
        "The conveyor bearings showed no wear; the next inspection is due in March.",
    ])  # fmt: skip
    data = _pdf(page, _lines(["Second page: the forklift permits were renewed."]))
    fast, miner = _parse(data, "pdfium"), _parse(data, "pdfminer")
    assert _texts(fast) == _texts(miner)
    assert [(el.kind, el.page_number) for el in fast] == [(el.kind, el.page_number) for el in miner]
    assert fast[0].kind == "title"
    assert fast[1].text.startswith("The hydraulic press") and fast[1].text.endswith("weekend run.")
    assert [el.page_number for el in fast] == [1, 1, 1, 2]


def test_side_by_side_columns_stay_apart() -> None:
    left = _lines(["Left column on pumps, line one,", "and pumps again on line two."], x=60)
    right = _lines(["Right column on valves, line one,", "and valves on line two."], x=320)
    fast = _parse(_pdf(_both(left, right)), "pdfium")
    assert _texts(fast) == [
        "Left column on pumps, line one, and pumps again on line two.",
        "Right column on valves, line one, and valves on line two.",
    ]


def test_running_headers_footers_and_page_numbers_are_dropped_but_a_first_line_is_kept() -> None:
    def page(n: int, first: str) -> PageDrawer:
        header = _lines(["ACME Corp. Internal - Confidential"], top=30)
        body = _lines([first, "", f"Body text of page {n} about the welding permit."], top=62)
        footer = _lines([f"Page {n} of 3"], top=820)
        return _both(header, body, footer)

    data = _pdf(page(1, "Boiler room checklist"), page(2, "Kiln start-up steps"),
                page(3, "Lathe guard audit"))  # fmt: skip
    texts = _texts(_parse(data, "pdfium"))
    assert not any("Confidential" in t or re.match(r"Page \d", t) for t in texts)
    # the first line of each page sits high on the page too, but it is content: it is kept
    # (pdfminer's path calls it a header by position alone and drops it)
    assert {"Boiler room checklist", "Kiln start-up steps", "Lathe guard audit"} <= set(texts)
    assert "Body text of page 2 about the welding permit." in texts


def test_japanese_lines_join_without_a_space() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont("HeiseiMin-W3"))

    def draw(pdf: Any, width: float, height: float) -> None:
        pdf.setFont("HeiseiMin-W3", 11)
        pdf.drawString(72, height - 120, "油圧プレスの安全装置は毎月点検し、")
        pdf.drawString(72, height - 134, "結果を保全記録に残すこと。")

    [element] = _parse(_pdf(draw), "pdfium")
    assert element.text == "油圧プレスの安全装置は毎月点検し、結果を保全記録に残すこと。"


def test_vertical_writing_reads_column_by_column() -> None:
    """Japanese 縦書き: each column a line, neighbouring columns one paragraph, no spaces between
    characters (pdfminer's path reads "油 圧 プ レ ス ..."); a label turned sideways reads too."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    font = UnicodeCIDFont("HeiseiMin-W3", isVertical=True)
    pdfmetrics.registerFont(font)

    def draw(pdf: Any, width: float, height: float) -> None:
        pdf.setFont(font.fontName, 14)
        pdf.drawString(400, 700, "油圧プレスの安全装置は毎月点検し、")
        pdf.drawString(380, 700, "結果を保全記録に残すこと。")
        pdf.setFont("Helvetica", 11)
        pdf.saveState()
        pdf.translate(100, 300)
        pdf.rotate(90)
        pdf.drawString(0, 0, "Sideways inspection label for the mixer")
        pdf.restoreState()

    data = _pdf(draw)
    texts = _texts(_parse(data, "pdfium"))
    assert texts == [
        "油圧プレスの安全装置は毎月点検し、結果を保全記録に残すこと。",
        "Sideways inspection label for the mixer",
    ]
    assert "油 圧" in " ".join(_texts(_parse(data, "pdfminer")))  # what pdfium avoids


def test_values_typed_into_a_form_are_read() -> None:
    def form(pdf: Any, width: float, height: float) -> None:
        _lines(["Hot work permit application"])(pdf, width, height)
        pdf.acroForm.textfield(name="applicant", value="Tanaka Hiroshi, welding bay 3",
                               x=72, y=height - 200, width=300, height=20)  # fmt: skip

    texts = _texts(_parse(_pdf(form), "pdfium"))
    assert texts == ["Hot work permit application", "Tanaka Hiroshi, welding bay 3"]
