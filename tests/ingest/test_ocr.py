"""OCR with the real Tesseract on generated images: English, Japanese (horizontal and vertical),
scanned and mixed PDFs, the parse integration, the cache and the single-thread rule."""

from __future__ import annotations

import io
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ingest import nlp_fallback
from ingest.cache import MemoryCache
from ingest.errors import (
    CorruptDocument,
    EmptyDocument,
    OcrIncomplete,
    OcrUnavailable,
    TransientError,
)
from ingest.models import SourceFile
from ingest.stages import ocr
from ingest.stages.ocr import OcrOptions, read_png, tidy_text
from ingest.stages.parse import ParseOptions, parse
from tests import scans

CJK_SPACE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff] [\u3040-\u30ff\u4e00-\u9fff]")


@pytest.fixture(scope="module", autouse=True)
def _offline_nlp() -> None:
    nlp_fallback.install()  # the text-layer pages of a PDF go through unstructured


@pytest.fixture(scope="module")
def cjk_font() -> str:
    return scans.require_cjk_font()


def _parse(share: Path, name: str, data: bytes, options: ParseOptions | None = None, **kw: Any):
    (share / name).write_bytes(data)
    return parse(
        SourceFile(kw.get("share_name", "s"), str(share), name, 0, 0), options or ParseOptions()
    )


def test_tesseract_has_the_languages_the_project_installs() -> None:
    assert {"eng", "jpn", "jpn_vert"} <= ocr.installed_languages()


def test_english_text_is_recognised() -> None:
    text = read_png(
        scans.png_bytes(scans.text_image(scans.ENGLISH_LINES)), ["eng", "jpn"], OcrOptions()
    )
    assert "narwhal bearings outlast the tungsten pendulum" in text
    assert "Invoice 4711" in text


def test_japanese_text_is_recognised_without_spaces_between_characters(cjk_font: str) -> None:
    png = scans.png_bytes(scans.text_image(scans.JAPANESE_LINES, cjk_font, size=48))
    text = read_png(png, ["eng", "jpn"], OcrOptions())
    assert "油圧プレスの安全装置を交換しました" in text
    assert "配電盤の清掃を計画しています" in text
    assert not CJK_SPACE.search(text), text


def test_vertical_japanese_is_read_by_the_automatic_retry(cjk_font: str) -> None:
    png = scans.png_bytes(scans.vertical_image(scans.VERTICAL_COLUMNS, cjk_font))
    text = read_png(png, ["eng", "jpn"], OcrOptions(vertical="auto"))
    assert "縦書きの文章を読みます" in text
    assert "冷却水ポンプの点検記録" in text
    # without the vertical model the same image is not read: the retry is what reads it
    plain = read_png(png, ["eng", "jpn"], OcrOptions(vertical="never"))
    assert "冷却水ポンプ" not in plain


def test_jpn_vert_in_the_languages_reads_vertical_text_first_time(
    cjk_font: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = ocr._read_png
    monkeypatch.setattr(
        ocr, "_read_png", lambda png, langs, *a: calls.append(langs) or real(png, langs, *a)
    )
    png = scans.png_bytes(scans.vertical_image(scans.VERTICAL_COLUMNS, cjk_font))
    text = read_png(png, ["eng", "jpn", "jpn_vert"], OcrOptions(vertical="never"))
    assert "冷却水ポンプの点検記録" in text
    assert calls == ["jpn+jpn_vert+eng"]  # Japanese models first, one pass


def test_a_confident_page_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = ocr._read_png
    monkeypatch.setattr(
        ocr, "_read_png", lambda png, langs, *a: calls.append(langs) or real(png, langs, *a)
    )
    read_png(scans.png_bytes(scans.text_image(scans.ENGLISH_LINES)), ["eng", "jpn"], OcrOptions())
    assert calls == ["eng+jpn"]


def test_tidy_text_joins_cjk_and_keeps_latin_words() -> None:
    assert tidy_text("油圧 プレ ス の Invoice 4711 を 交換") == "油圧プレスの Invoice 4711 を交換"
    assert tidy_text("text\n| — |\nmore") == "text\n\nmore"


def test_tesseract_runs_with_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, str]] = []
    real_run = subprocess.run

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["env"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(ocr.subprocess, "run", spy)
    read_png(scans.png_bytes(scans.text_image(["One thread"])), ["eng"], OcrOptions())
    assert seen and all(env["OMP_THREAD_LIMIT"] == "1" for env in seen)


def test_the_cache_answers_the_second_read(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MemoryCache()
    png = scans.png_bytes(scans.text_image(scans.ENGLISH_LINES))
    first = read_png(png, ["eng", "jpn"], OcrOptions(), cache)

    def no_tesseract(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Tesseract ran for an image already in the cache")

    monkeypatch.setattr(ocr, "_read_png", no_tesseract)
    assert read_png(png, ["eng", "jpn"], OcrOptions(), cache) == first
    assert cache.hits == 1
    with pytest.raises(AssertionError):  # other languages: another key
        read_png(png, ["eng"], OcrOptions(), cache)


def test_a_missing_language_names_its_package() -> None:
    with pytest.raises(OcrUnavailable, match="tesseract-ocr-klingon"):
        read_png(scans.png_bytes(scans.text_image(["x"])), ["klingon"], OcrOptions())


# -- parsing ----------------------------------------------------------------------------------


def test_scanned_pdf_pages_are_ocrd_page_by_page(share: Path, cjk_font: str) -> None:
    pages = [scans.page_scan(scans.ENGLISH_LINES), scans.page_scan(scans.JAPANESE_LINES, cjk_font)]
    doc = _parse(share, "scan.pdf", scans.scanned_pdf(pages))
    by_page = {p: "\n".join(e.text for e in doc.elements if e.page_number == p) for p in (1, 2)}
    assert "narwhal bearings outlast the tungsten pendulum" in by_page[1]
    assert "油圧プレスの安全装置を交換しました" in by_page[2]
    assert "narwhal" not in by_page[2]


def test_a_mixed_pdf_ocrs_only_the_page_without_text(
    share: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[int] = []
    real = ocr.render_pdf_pages

    def spy(data: bytes, pages: list[int], options: OcrOptions) -> Any:
        read.extend(pages)
        return real(data, pages, options)

    monkeypatch.setattr(ocr, "render_pdf_pages", spy)
    data = scans.mixed_pdf(
        ["The cobalt valve was typed, not scanned."], scans.page_scan(scans.ENGLISH_LINES)
    )
    doc = _parse(share, "mixed.pdf", data)
    assert read == [2]
    texts = [(e.page_number, e.text) for e in doc.elements]
    assert (1, "The cobalt valve was typed, not scanned.") in texts
    assert any(p == 2 and "tungsten pendulum" in t for p, t in texts)
    assert [p for p, _ in texts] == sorted(p for p, _ in texts)  # reading order kept


def test_ocr_can_be_disabled(share: Path) -> None:
    data = scans.scanned_pdf([scans.page_scan(scans.ENGLISH_LINES)])
    with pytest.raises(EmptyDocument, match="OCR is disabled"):
        _parse(share, "scan.pdf", data, ParseOptions(ocr=OcrOptions(enabled=False)))


@pytest.mark.parametrize(("name", "fmt"), [("a.png", "PNG"), ("a.jpg", "JPEG"), ("a.bmp", "BMP"),
                                           ("a.webp", "WEBP"), ("a.tif", "TIFF")])  # fmt: skip
def test_every_image_format_is_parsed_by_ocr(share: Path, name: str, fmt: str) -> None:
    img = scans.text_image(scans.ENGLISH_LINES).convert("RGB")
    doc = _parse(share, name, scans.png_bytes(img, fmt))
    assert "tungsten pendulum" in "\n".join(e.text for e in doc.elements)


def test_a_multi_page_tiff_numbers_its_pages(share: Path) -> None:
    first, second = (
        scans.text_image(["First page about herons."]),
        scans.text_image(["Second page about cranes."]),
    )
    buf = io.BytesIO()
    first.save(buf, format="TIFF", save_all=True, append_images=[second])
    doc = _parse(share, "fax.tiff", buf.getvalue())
    assert [(e.page_number, e.text) for e in doc.elements] == [
        (1, "First page about herons."),
        (2, "Second page about cranes."),
    ]


def test_per_share_languages_apply_to_that_share_only(share: Path, cjk_font: str) -> None:
    options = ParseOptions(
        languages=("eng", "jpn"),
        languages_by_share=(("tategaki", ("jpn", "jpn_vert")),),
        ocr=OcrOptions(vertical="never"),
    )
    assert options.for_share("tategaki").languages == ("jpn", "jpn_vert")
    assert options.for_share("other").languages == ("eng", "jpn")
    data = scans.png_bytes(scans.vertical_image(scans.VERTICAL_COLUMNS, cjk_font))
    doc = _parse(share, "v.png", data, options, share_name="tategaki")
    assert "冷却水ポンプの点検記録" in "\n".join(e.text for e in doc.elements)


def test_a_corrupt_image_is_a_permanent_error_with_a_reason(share: Path) -> None:
    with pytest.raises(CorruptDocument, match="not a valid PNG image"):
        _parse(share, "junk.png", b"\x89PNG\r\n\x1a\n" + b"junk" * 100)
    whole = scans.png_bytes(scans.text_image(scans.ENGLISH_LINES))
    with pytest.raises(CorruptDocument, match="truncated"):
        _parse(share, "cut.png", whole[: len(whole) // 2])


def test_an_image_without_text_is_skipped_unless_captions_follow(share: Path) -> None:
    blank = scans.png_bytes(Image.new("L", (600, 400), 255))
    with pytest.raises(EmptyDocument, match="no text recognised in this PNG image"):
        _parse(share, "blank.png", blank)
    doc = _parse(share, "photo.png", blank, ParseOptions(keep_textless_images=True))
    assert [(e.kind, e.text) for e in doc.elements] == [("title", "photo.png")]


def test_a_scan_is_rendered_at_its_own_resolution_within_limits() -> None:
    options = OcrOptions(dpi=300)
    a4_at_200 = scans.scanned_pdf([scans.page_scan(["x"])])  # 1654 px over 8.27 in
    assert [dpi for _, dpi in ocr.render_pdf_pages(a4_at_200, [1], options)] == [200]
    a4_at_100 = scans.scanned_pdf([scans.page_scan(["x"]).resize((827, 1170))])
    assert [dpi for _, dpi in ocr.render_pdf_pages(a4_at_100, [1], options)] == [200]
    a4_at_600 = scans.scanned_pdf([scans.page_scan(["x"]).resize((4962, 7017))])
    assert [dpi for _, dpi in ocr.render_pdf_pages(a4_at_600, [1], options)] == [300]
    poster = OcrOptions(dpi=300, max_page_pixels=1_000_000)
    [(png, dpi)] = list(ocr.render_pdf_pages(a4_at_200, [1], poster))
    width, height = Image.open(io.BytesIO(png)).size
    assert dpi < 200 and width * height <= 1_002_000  # pdfium rounds each side up


def test_a_long_scan_goes_on_where_the_last_attempt_stopped(share: Path) -> None:
    pages = [scans.page_scan([f"Page {n} of the long scan mentions the {word} gauge."])
             for n, word in ((1, "amber"), (2, "violet"), (3, "crimson"))]  # fmt: skip
    (share / "long.pdf").write_bytes(scans.scanned_pdf(pages))
    source = SourceFile("s", str(share), "long.pdf", 0, 0)
    options = ParseOptions(ocr=OcrOptions(time_budget_s=0.0), cache=MemoryCache())
    for done in (1, 2):  # every attempt reads one more page: cached pages cost no budget
        with pytest.raises(OcrIncomplete, match=f"read {done} of 3 scanned pages") as info:
            parse(source, options)
        assert isinstance(info.value, TransientError)  # pending and retried, not failed
    text = "\n".join(e.text for e in parse(source, options).elements)
    assert all(word in text for word in ("amber", "violet", "crimson"))
    # without a cache a retry could not go further: the budget does not apply
    assert len(parse(source, replace(options, cache=None)).elements) == 3
