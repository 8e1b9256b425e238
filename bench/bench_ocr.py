"""``make bench`` (OCR): seconds per scanned page on this machine, the way the parse stage reads it.

Full A4 pages of dense text (an English page, a Japanese page, a vertical Japanese page) are
rendered into image-only PDFs (200 dpi scans); each page is rendered back with pdfium and read by
Tesseract with the default languages (eng+jpn, vertical "auto"), one thread, no cache. Also: the
cost of a cache hit (the same page read again) and how many characters were recognised.
"""

from __future__ import annotations

import argparse
import difflib
import os
import platform
import random
import statistics
import time
from typing import Any

from bench.common import write_result

_WORDS = """
maintenance inspection pressure valve pump bearing seal schedule report supplier invoice quality
production line operator shift safety procedure measurement tolerance calibration sample defect
the a of and to in for with on by from after before during because every each was were is are
""".split()
_JA = (
    "本日は第二工場の設備点検を実施しました。",
    "油圧プレスの安全装置は正常に動作しています。",
    "冷却水ポンプの流量と温度を記録しました。",
    "配電盤の清掃は来月の第一週に予定しています。",
    "異常を見つけた場合は直ちに責任者へ連絡してください。",
)


def english_lines(rng: random.Random, count: int) -> list[str]:
    return [
        " ".join(rng.choice(_WORDS) for _ in range(11)).capitalize() + "." for _ in range(count)
    ]


def japanese_lines(rng: random.Random, count: int) -> list[str]:
    return [rng.choice(_JA) for _ in range(count)]


def _pages(kind: str, count: int) -> tuple[list[Any], list[str]]:
    """The page images and the text on each (the ground truth for the accuracy figure)."""
    from PIL import Image

    from tests import scans

    rng = random.Random(7)
    font = scans.cjk_font_path()
    if kind != "english" and font is None:
        raise SystemExit(
            "a CJK font is needed to render Japanese pages: apt-get install fonts-noto-cjk"
        )
    pages, texts = [], []
    for _ in range(count):
        if kind == "english":
            lines = english_lines(rng, 38)
            img = scans.text_image(lines, size=30, width=1550)
        elif kind == "japanese":
            lines = japanese_lines(rng, 32)
            img = scans.text_image(lines, font or "", size=34, width=1550)
        else:
            lines = [rng.choice(_JA)[:18] for _ in range(10)]
            img = scans.vertical_image(tuple(lines), font or "", size=40)
        page = Image.new("L", (1654, 2339), 255)  # A4 at 200 dpi, as a scanner gives
        page.paste(img.crop((0, 0, min(img.width, 1654), min(img.height, 2339))), (40, 60))
        pages.append(page)
        texts.append("\n".join(lines))
    return pages, texts


def _accuracy(expected: str, got: str) -> float:
    """Similarity of the recognised characters to the truth, blanks ignored (0-1)."""

    def squash(text: str) -> str:
        return "".join(text.split())

    return difflib.SequenceMatcher(None, squash(expected), squash(got), autojunk=False).ratio()


def measure(kind: str, count: int) -> dict[str, Any]:
    from ingest.cache import MemoryCache
    from ingest.stages.ocr import OcrOptions, read_png, render_pdf_pages
    from tests import scans

    images, truth = _pages(kind, count)
    data = scans.scanned_pdf(images)
    options = OcrOptions()
    render_s: list[float] = []
    ocr_s: list[float] = []
    chars = 0
    accuracy: list[float] = []
    cache = MemoryCache()
    pngs = []
    started = time.perf_counter()
    for png, dpi in render_pdf_pages(data, list(range(1, count + 1)), options):
        render_s.append(time.perf_counter() - started)
        t = time.perf_counter()
        text = read_png(png, ["eng", "jpn"], options, cache, dpi=dpi)
        ocr_s.append(time.perf_counter() - t)
        chars += len(text)
        accuracy.append(_accuracy(truth[len(ocr_s) - 1], text))
        pngs.append((png, dpi))
        started = time.perf_counter()
    t = time.perf_counter()
    for png, dpi in pngs:
        read_png(png, ["eng", "jpn"], options, cache, dpi=dpi)
    hit_s = (time.perf_counter() - t) / len(pngs)
    return {
        "pages": count,
        "seconds_per_page": round(
            statistics.median(r + o for r, o in zip(render_s, ocr_s, strict=True)), 3
        ),
        "render_seconds_per_page": round(statistics.median(render_s), 3),
        "ocr_seconds_per_page": round(statistics.median(ocr_s), 3),
        "characters_per_page": chars // count,
        "character_accuracy": round(statistics.mean(accuracy), 3),
        "cache_hit_seconds_per_page": round(hit_s, 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=3, help="pages of each kind")
    parser.add_argument("--out", default="bench-results/ocr.json")
    args = parser.parse_args()
    from ingest.stages.ocr import tesseract_version

    os.environ["OMP_THREAD_LIMIT"] = "1"
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "tesseract": tesseract_version(),
        "dpi": "300 at most; a scan is read at its own resolution (here 200 dpi)",
        "languages": "eng+jpn (vertical: auto)",
        "english": measure("english", args.pages),
        "japanese": measure("japanese", args.pages),
        "vertical_japanese": measure("vertical", args.pages),
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
