"""OCR stage: images and scanned PDF pages -> text, with the Tesseract command-line tool.

Tesseract runs as a child process with ``OMP_THREAD_LIMIT=1``: parallelism comes from the parse
workers, and an OpenMP pool per page on top of them would only oversubscribe the cores.

Languages come from the options (per share), joined with ``+``. Vertical Japanese needs
Tesseract's ``jpn_vert`` model, and ``eng+jpn`` reads a vertical page as garbage, while always
adding ``jpn_vert`` makes every page about 70% slower. So ``vertical="auto"`` (the default) reads
a page with the configured languages first and, only when that reading is unsure (mean word
confidence under ``retry_below_confidence``) and the languages include ``jpn``, reads it again as
``jpn+jpn_vert+...`` and keeps the more confident reading. ``"always"`` reads every page that way
(use it for shares of vertical documents); ``"never"`` never adds ``jpn_vert``. ``jpn_vert`` named
in the languages means ``"always"``. Tesseract reads the first language's script best, so the
Japanese models go first whenever ``jpn_vert`` is used.

Tesseract's Japanese output puts spaces between words; they are removed between two CJK
characters (``tidy_text``) and kept next to Latin words.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from ingest.cache import ContentCache, content_key
from ingest.errors import OcrFailed, OcrUnavailable
from ingest.images import fit, load_frames, to_png
from ingest.models import Element
from ingest.pdfium import open_pdf, pdfium
from ingest.text import CJK_CHAR, normalize_space

log = logging.getLogger(__name__)

#: bump when the text this module produces for the same image changes (cache keys include it)
OCR_VERSION = "1"

_CJK_CLASS = CJK_CHAR.pattern
_CJK_GAP = re.compile(f"(?<={_CJK_CLASS})[ \u3000]+(?={_CJK_CLASS})")
# a line with no letter, digit or CJK character is a table rule, a bar of a chart or dust
_HAS_WORD = re.compile(rf"[^\W_]|{_CJK_CLASS}")


@dataclass(frozen=True)
class OcrOptions:
    enabled: bool = True
    vertical: Literal["auto", "always", "never"] = "auto"
    #: below this mean word confidence (0-100), "auto" tries the vertical Japanese model too
    retry_below_confidence: float = 75.0
    #: resolution PDF pages are rendered at for Tesseract (300 is what its models expect)
    dpi: int = 300
    #: a big page (a poster, a drawing) is rendered at a lower resolution to stay under this
    max_page_pixels: int = 40_000_000
    #: a PDF page whose text layer has fewer non-space characters than this is OCR'd
    min_text_chars: int = 16
    #: pages of one document past this are not OCR'd (bounds the time one scan can take)
    max_pages: int = 300
    page_timeout_s: float = 180.0
    #: seconds of OCR per parse attempt (keep it under the parse time limit); with a cache, a
    #: longer scan ends the attempt with OcrIncomplete and the next attempt goes on from there
    time_budget_s: float | None = None


@dataclass(frozen=True)
class OcrResult:
    text: str
    #: mean word confidence weighted by word length, 0-100; -1 when nothing was recognised
    confidence: float
    languages: str


def tidy_text(text: str) -> str:
    """Drop the spaces Tesseract puts between Japanese words, and lines that hold no word."""
    lines = (_CJK_GAP.sub("", line).strip() for line in text.split("\n"))
    return "\n".join(line if _HAS_WORD.search(line) else "" for line in lines).strip()


# -- Tesseract ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def tesseract_version() -> str:
    out = _run_tesseract(["--version"], b"", timeout_s=30).decode("utf-8", "replace")
    first = out.strip().splitlines()[0] if out.strip() else "tesseract"
    return first.strip()


@lru_cache(maxsize=1)
def installed_languages() -> frozenset[str]:
    out = _run_tesseract(["--list-langs"], b"", timeout_s=30).decode("utf-8", "replace")
    return frozenset(line.strip() for line in out.splitlines()[1:] if line.strip())


def check_languages(languages: Sequence[str]) -> None:
    """Raise OcrUnavailable naming the Debian package of any language Tesseract lacks."""
    missing = [lang for lang in languages if lang not in installed_languages()]
    if missing:
        packages = " ".join(f"tesseract-ocr-{m.replace('_', '-').lower()}" for m in missing)
        raise OcrUnavailable(
            f"Tesseract has no language data for {'+'.join(missing)} (install: {packages})"
        )


def _run_tesseract(args: list[str], stdin: bytes, timeout_s: float) -> bytes:
    # the environment is passed through unchanged except for the one thread per process
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    try:
        proc = subprocess.run(
            ["tesseract", *args], input=stdin, capture_output=True, timeout=timeout_s, env=env
        )
    except FileNotFoundError as exc:
        raise OcrUnavailable(
            "the tesseract command is not installed (install: tesseract-ocr)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise OcrFailed(
            f"OCR of one page took longer than {timeout_s:g} s and was stopped"
        ) from exc
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrFailed(f"tesseract failed: {reason[-1] if reason else proc.returncode}")
    return proc.stdout


def _read_png(png: bytes, languages: str, options: OcrOptions, dpi: int | None) -> OcrResult:
    args = ["stdin", "stdout", "-l", languages, "--psm", "3"]
    if dpi:
        args += ["--dpi", str(dpi)]
    out = _run_tesseract([*args, "tsv"], png, options.page_timeout_s)
    text, confidence = _from_tsv(out.decode("utf-8", "replace"))
    return OcrResult(tidy_text(text), confidence, languages)


def _from_tsv(tsv: str) -> tuple[str, float]:
    """Tesseract's TSV as text (a line per line, a blank line between blocks) and its confidence."""
    lines: dict[tuple[int, int, int], list[str]] = {}
    block_of: dict[tuple[int, int, int], int] = {}
    total = weight = 0.0
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        word = (row.get("text") or "").strip()
        if row.get("level") != "5" or not word:
            continue
        key = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        lines.setdefault(key, []).append(word)
        block_of[key] = key[0]
        conf = float(row.get("conf") or -1)
        if conf >= 0:
            total += conf * len(word)
            weight += len(word)
    out: list[str] = []
    previous_block = None
    for key, words in lines.items():
        if previous_block is not None and block_of[key] != previous_block:
            out.append("")
        out.append(" ".join(words))
        previous_block = block_of[key]
    return "\n".join(out), (total / weight if weight else -1.0)


# -- languages and the vertical retry -------------------------------------------------------------


def _japanese_first(languages: Sequence[str]) -> str:
    rest = [lang for lang in languages if lang not in ("jpn", "jpn_vert")]
    return "+".join(["jpn", "jpn_vert", *rest])


def _plans(languages: Sequence[str], options: OcrOptions) -> tuple[str, str | None]:
    """The languages to read with first, and those of the vertical retry (None: no retry)."""
    langs = list(dict.fromkeys(languages)) or ["eng"]
    if "jpn_vert" in langs or options.vertical == "always":
        return _japanese_first(langs), None
    if options.vertical == "auto" and "jpn" in langs and "jpn_vert" in installed_languages():
        return "+".join(langs), _japanese_first(langs)
    return "+".join(langs), None


def ocr_key(png: bytes, languages: Sequence[str], options: OcrOptions, dpi: int | None) -> str:
    """What decides the text: the pixels, Tesseract's version, the languages and the retry."""
    first, retry = _plans(languages, options)
    engine = f"{tesseract_version()}|{first}|{retry}|{options.retry_below_confidence}|{dpi}"
    return content_key("ocr", png, engine, OCR_VERSION)


def read_png(
    png: bytes,
    languages: Sequence[str],
    options: OcrOptions,
    cache: ContentCache | None = None,
    dpi: int | None = None,
) -> str:
    """The text of one PNG page or image; the cache is keyed by the PNG bytes and the settings."""
    first, retry = _plans(languages, options)
    key = ocr_key(png, languages, options, dpi)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    check_languages([*first.split("+"), *(retry.split("+") if retry else [])])
    result = _read_png(png, first, options, dpi)
    if retry and result.confidence < options.retry_below_confidence:
        second = _read_png(png, retry, options, dpi)
        log.debug("OCR confidence %.0f with %s, %.0f with %s", result.confidence, first,
                  second.confidence, retry)  # fmt: skip
        if second.confidence > result.confidence:
            result = second
    if cache is not None:
        cache.put(key, result.text)
    return result.text


# -- documents ----------------------------------------------------------------------------------


def text_elements(text: str, page: int | None) -> list[Element]:
    """Paragraphs (blank-line separated) of OCR text as elements of one page."""
    paragraphs = (normalize_space(p) for p in re.split(r"\n\s*\n", text))
    return [Element(kind="text", text=p, page_number=page) for p in paragraphs if p]


def image_pages(data: bytes, what: str = "image") -> Iterator[bytes]:
    """The PNG of each frame of an image file (one, or one per page of a multi-page TIFF)."""
    for frame in load_frames(data, what):
        # Tesseract gains nothing past ~40 MP, and a phone panorama would take minutes
        yield to_png(fit(frame, 12_000, 40_000_000))


def ocr_image(
    data: bytes,
    languages: Sequence[str],
    options: OcrOptions,
    cache: ContentCache | None = None,
    what: str = "image",
) -> list[Element]:
    """Elements of a standalone image file; a multi-page TIFF numbers its pages from 1."""
    pages = list(image_pages(data, what))
    elements: list[Element] = []
    for number, png in enumerate(pages, start=1):
        text = read_png(png, languages, options, cache)
        elements += text_elements(text, number if len(pages) > 1 else None)
    return elements


def image_text(
    data: bytes,
    languages: Sequence[str],
    options: OcrOptions,
    cache: ContentCache | None = None,
    what: str = "image",
) -> str:
    """All the text of an image (a figure inside a document): its frames, blank-line separated."""
    texts = (read_png(png, languages, options, cache) for png in image_pages(data, what))
    return "\n\n".join(text for text in texts if text)


def pdf_pages_to_ocr(
    data: bytes, options: OcrOptions, extracted: Mapping[int, int] | None = None
) -> list[int]:
    """1-based numbers of the pages with (almost) no text layer: scans, or pages of pictures.

    ``extracted``: characters per page another extractor found; a page where either pdfium or
    that extractor finds text keeps its text layer (their font handling differs).
    """
    extracted = extracted or {}
    pages = []
    with pdfium():
        pdf = open_pdf(data)
        try:
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                chars = len(re.sub(r"\s+", "", textpage.get_text_range()))
                textpage.close()
                page.close()
                if max(chars, extracted.get(index + 1, 0)) < options.min_text_chars:
                    pages.append(index + 1)
        finally:
            pdf.close()
    return pages


def render_pdf_pages(
    data: bytes, pages: Sequence[int], options: OcrOptions
) -> Iterator[tuple[bytes, int]]:
    """PNG and resolution of the given 1-based pages.

    ``options.dpi`` at most, less for very big pages, and no more than the resolution of the scan
    on the page: rendering a 200 dpi scan at 300 dpi adds no detail, only ~40% more OCR time.
    Each page is rendered under the pdfium lock; its PNG is encoded (and OCR'd by the caller)
    outside it.
    """
    pdf = None
    try:
        for number in pages:
            with pdfium():
                if pdf is None:
                    pdf = open_pdf(data)
                page = pdf[number - 1]
                try:
                    width, height = page.get_size()  # points, 1/72 inch
                    dpi = min(options.dpi, _scan_dpi(page) or options.dpi)
                    scale = min(dpi / 72, (options.max_page_pixels / (width * height)) ** 0.5)
                    bitmap = page.render(scale=scale, grayscale=True)
                    try:
                        pil = bitmap.to_pil().copy()  # to_pil shares the buffer close() frees
                    finally:
                        bitmap.close()
                finally:
                    page.close()
            yield to_png(pil), round(scale * 72)
    finally:
        if pdf is not None:
            with pdfium():
                pdf.close()


#: below this a scan is upscaled anyway: Tesseract reads small glyphs badly
_MIN_SCAN_DPI = 200


def _scan_dpi(page: Any) -> float | None:
    """The resolution of the largest picture on the page (the scan), None without pictures."""
    import pypdfium2.raw as pdfium_c

    best: tuple[float, float] | None = None  # (area in points, dpi)
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2):
        left, bottom, right, top = obj.get_bounds()
        px_width, _ = obj.get_px_size()
        shown = right - left
        if shown <= 0 or px_width <= 0:
            continue
        area = shown * (top - bottom)
        if best is None or area > best[0]:
            best = (area, px_width / shown * 72)
    return max(_MIN_SCAN_DPI, best[1]) if best else None
