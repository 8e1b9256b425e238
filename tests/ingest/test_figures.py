"""Figure extraction from real generated PDF, DOCX and PPTX files with a chart and a logo."""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from PIL import Image

from ingest.errors import CorruptDocument
from ingest.stages.figures import Figure, FigureOptions, extract_figures
from tests import scans


def _only(figures: list[Figure]) -> Figure:
    assert len(figures) == 1, [(f.width, f.height, f.page) for f in figures]
    return figures[0]


def _is_the_chart(figure: Figure) -> None:
    assert (figure.width, figure.height) == (800, 500)
    assert figure.sha256 == hashlib.sha256(figure.data).hexdigest()
    img = Image.open(io.BytesIO(figure.data))
    assert img.size == (800, 500)
    assert figure.mime == f"image/{img.format.lower()}"  # type: ignore[union-attr]
    blue = img.convert("RGB").getpixel((150, 400))  # inside the first bar
    assert blue == (40, 90, 200)


def test_pdf_chart_is_a_figure_logo_and_banner_are_not() -> None:
    figure = _only(extract_figures(scans.pdf_with_figures(), "pdf"))
    _is_the_chart(figure)
    assert figure.page == 2
    assert figure.area_ratio == pytest.approx(400 * 250 / (595.28 * 841.89), rel=0.01)


def test_pdf_a_picture_repeated_on_every_page_is_decoration() -> None:
    data = scans.pdf_with_figures(pages=3)
    # allow repeats: the banner (same picture on 3 pages) comes back, once, from page 1
    figures = extract_figures(data, "pdf", FigureOptions(repeat_pages=4))
    assert [(f.width, f.page) for f in figures] == [(900, 1), (800, 2)]


def test_pdf_small_pictures_are_dropped_by_size_and_area() -> None:
    data = scans.pdf_with_figures(pages=1)
    loose = FigureOptions(min_side_px=1, min_area_ratio=0, repeat_pages=99)
    assert sorted(f.width for f in extract_figures(data, "pdf", loose)) == [48, 900]
    by_side = FigureOptions(min_side_px=64, min_area_ratio=0, repeat_pages=99)
    assert [f.width for f in extract_figures(data, "pdf", by_side)] == [900]
    by_area = FigureOptions(min_side_px=1, min_area_ratio=0.015, repeat_pages=99)
    assert [f.width for f in extract_figures(data, "pdf", by_area)] == [900]


def test_pdf_a_scanned_page_is_not_a_figure() -> None:
    data = scans.scanned_pdf([scans.page_scan(scans.ENGLISH_LINES)])
    assert extract_figures(data, "pdf") == []


def test_docx_chart_with_its_section_and_no_logo() -> None:
    figure = _only(extract_figures(scans.docx_with_figures(), "docx"))
    _is_the_chart(figure)
    assert figure.section == "Output figures"
    assert figure.page is None
    assert 0.1 < (figure.area_ratio or 0) < 0.3


def test_pptx_chart_with_its_slide_and_title_and_no_logo() -> None:
    figure = _only(extract_figures(scans.pptx_with_figures(), "pptx"))
    _is_the_chart(figure)
    assert (figure.page, figure.section) == (2, "Output trend")


def test_a_standalone_image_is_its_own_figure_unless_it_is_an_icon() -> None:
    data = scans.png_bytes(scans.chart_image())
    figure = _only(extract_figures(data, "png"))
    assert figure.data == data
    assert (figure.page, figure.section, figure.area_ratio) == (None, None, None)
    assert extract_figures(scans.png_bytes(scans.logo_image(32)), "png") == []


def test_formats_without_pictures_have_no_figures() -> None:
    assert extract_figures(b"plain text", "txt") == []


@pytest.mark.parametrize("filetype", ["pdf", "docx", "pptx", "png"])
def test_a_corrupt_file_is_a_permanent_error(filetype: str) -> None:
    with pytest.raises(CorruptDocument):
        extract_figures(b"\x00junk" * 200, filetype)


def test_extraction_is_cheap_enough_to_repeat_on_a_gpu_worker() -> None:
    files = [(scans.pdf_with_figures(pages=20), "pdf"), (scans.docx_with_figures(), "docx"),
             (scans.pptx_with_figures(), "pptx")]  # fmt: skip
    started = time.perf_counter()
    for data, filetype in files:
        extract_figures(data, filetype)
    assert time.perf_counter() - started < 2.0
