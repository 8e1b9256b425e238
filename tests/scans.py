"""Generated documents that need eyes: text rendered into pixels, scanned PDFs, and office files
with a chart and a logo. Deterministic, local, no network; used by the OCR, figure and caption
tests, the OCR end-to-end test and the OCR benchmark.

Japanese text needs a CJK font (Debian ``fonts-noto-cjk``, installed by ``make deb``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)

ENGLISH_LINES = (
    "Maintenance report for the northern plant",
    "The narwhal bearings outlast the tungsten pendulum.",
    "Invoice 4711 was approved on 12 March 2024.",
)
JAPANESE_LINES = (
    "製造部の月次報告",
    "油圧プレスの安全装置を交換しました。",
    "来月は配電盤の清掃を計画しています。",
)
#: right to left columns, read top to bottom
VERTICAL_COLUMNS = ("縦書きの文章を読みます", "冷却水ポンプの点検記録")


def cjk_font_path() -> str | None:
    return next((p for p in CJK_FONTS if Path(p).is_file()), None)


def require_cjk_font() -> str:
    """The CJK font, or skip (locally) / fail (in CI) with what to install."""
    import pytest

    path = cjk_font_path()
    if path is None:
        message = "no CJK font to render Japanese test images: apt-get install fonts-noto-cjk"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def text_image(
    lines: tuple[str, ...] | list[str],
    font_path: str = LATIN_FONT,
    size: int = 40,
    width: int = 1400,
    margin: int = 60,
) -> Image.Image:
    """Black text on white, one line per entry, like a clean scan at ~300 dpi."""
    font = _font(font_path, size)
    height = margin * 2 + int(len(lines) * size * 1.8)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((margin, margin + int(i * size * 1.8)), line, font=font, fill=0)
    return img


def vertical_image(columns: tuple[str, ...], font_path: str, size: int = 48) -> Image.Image:
    """Vertical Japanese: characters top to bottom, columns right to left."""
    font = _font(font_path, size)
    margin, step = 100, int(size * 1.2)  # Tesseract misreads columns that touch the edge
    longest = max(len(c) for c in columns)
    width = 2 * margin + (len(columns) - 1) * size * 2 + size
    img = Image.new("L", (width, 2 * margin + longest * step), 255)
    draw = ImageDraw.Draw(img)
    for c, column in enumerate(columns):
        x = width - margin - size - c * size * 2
        for j, char in enumerate(column):
            draw.text((x, margin + j * step), char, font=font, fill=0)
    return img


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def page_scan(lines: tuple[str, ...] | list[str], font_path: str = LATIN_FONT) -> Image.Image:
    """An A4 page at 200 dpi with the lines near the top, as a flatbed scanner would give."""
    page = Image.new("L", (1654, 2339), 255)
    page.paste(text_image(lines, font_path, size=34, width=1500), (80, 120))
    return page


def scanned_pdf(pages: list[Image.Image]) -> bytes:
    """A PDF whose pages are only pictures (no text layer), one picture filling each page."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=1)
    for page in pages:
        pdf.drawImage(ImageReader(page), 0, 0, width=A4[0], height=A4[1])
        pdf.showPage()
    pdf.save()
    return buf.getvalue()


def _pdf_with_text_page(text_lines: list[str], more: Callable[[Any, float, float], None]) -> bytes:
    """Page 1 holds the lines as a text layer; ``more(canvas, width, height)`` draws the rest."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=1)
    pdf.setFont("Helvetica", 12)
    for i, line in enumerate(text_lines):
        pdf.drawString(72, A4[1] - 72 - 18 * i, line)
    more(pdf, *A4)
    pdf.showPage()
    pdf.save()
    return buf.getvalue()


def mixed_pdf(text_lines: list[str], scan: Image.Image) -> bytes:
    """Page 1 has a text layer; page 2 is a scan."""
    from reportlab.lib.utils import ImageReader

    def scan_page(pdf: Any, width: float, height: float) -> None:
        pdf.showPage()
        pdf.drawImage(ImageReader(scan), 0, 0, width=width, height=height)

    return _pdf_with_text_page(text_lines, scan_page)


def pdf_with_pasted_scan(text_lines: list[str], pasted: Image.Image) -> bytes:
    """One page with a text layer and, below the text, a picture of more text (a pasted scan)."""
    from reportlab.lib.utils import ImageReader

    def paste(pdf: Any, width: float, height: float) -> None:
        w = width - 144
        h = w * pasted.height / pasted.width
        pdf.drawImage(ImageReader(pasted), 72, height - 200 - h, width=w, height=h)

    return _pdf_with_text_page(text_lines, paste)


# -- figures ----------------------------------------------------------------------------------


def chart_image() -> Image.Image:
    """A bar chart, 800x500, titled "Monthly output" with labelled bars."""
    img = Image.new("RGB", (800, 500), "white")
    draw = ImageDraw.Draw(img)
    font = _font(LATIN_FONT, 28)
    draw.text((250, 20), "Monthly output", font=font, fill="black")
    draw.line((80, 440, 760, 440), fill="black", width=3)
    draw.line((80, 80, 80, 440), fill="black", width=3)
    for i, (label, value) in enumerate((("Jan", 120), ("Feb", 200), ("Mar", 310), ("Apr", 260))):
        x = 130 + i * 160
        draw.rectangle((x, 440 - value, x + 90, 440), fill=(40, 90, 200))
        draw.text((x + 20, 450), label, font=_font(LATIN_FONT, 24), fill="black")
    return img


def logo_image(side: int = 48) -> Image.Image:
    img = Image.new("RGB", (side, side), (200, 30, 30))
    ImageDraw.Draw(img).ellipse((4, 4, side - 4, side - 4), fill="white")
    return img


def banner_image() -> Image.Image:
    """A header banner big enough to pass the size thresholds: only repetition marks it."""
    img = Image.new("RGB", (900, 160), (20, 60, 120))
    ImageDraw.Draw(img).text((30, 50), "ACME", font=_font(LATIN_FONT, 60), fill="white")
    return img


def pdf_with_figures(pages: int = 3) -> bytes:
    """Text on every page, a small logo and a banner on every page, the chart on page 2."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    logo, banner, chart = logo_image(), banner_image(), chart_image()
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, invariant=1)
    for number in range(1, pages + 1):
        pdf.drawImage(ImageReader(logo), A4[0] - 60, A4[1] - 60, width=24, height=24)
        pdf.drawImage(ImageReader(banner), 72, A4[1] - 130, width=300, height=53)
        pdf.setFont("Helvetica", 12)
        pdf.drawString(72, A4[1] - 160, f"Production report, page {number}.")
        if number == 2:
            pdf.drawImage(ImageReader(chart), 72, 300, width=400, height=250)
        pdf.showPage()
    pdf.save()
    return buf.getvalue()


def docx_with_figures() -> bytes:
    import docx
    from docx.shared import Inches

    doc = docx.Document()
    doc.add_heading("Plant overview", level=1)
    doc.add_paragraph("The plant runs three shifts.")
    doc.add_picture(io.BytesIO(png_bytes(logo_image())), width=Inches(0.3))
    doc.add_heading("Output figures", level=1)
    doc.add_paragraph("The chart below shows the monthly output.")
    doc.add_picture(io.BytesIO(png_bytes(chart_image())), width=Inches(5))
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def pptx_with_figures() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    logo, chart = png_bytes(logo_image()), png_bytes(chart_image())
    for title, with_chart in (("Introduction", False), ("Output trend", True)):
        slide = prs.slides.add_slide(prs.slide_layouts[5])  # title only
        slide.shapes.title.text = title
        slide.shapes.add_picture(io.BytesIO(logo), Inches(9.2), Inches(0.1), width=Inches(0.4))
        if with_chart:
            slide.shapes.add_picture(io.BytesIO(chart), Inches(1.5), Inches(2), width=Inches(6))
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()
