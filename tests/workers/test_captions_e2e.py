"""Figures captioned by the VLM (a test double of vLLM's OpenAI API: tests/vlm_double.py) through
the real indexer: the text first, captions added later when the VLM was down, found by search,
and never asked for twice (content cache)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from index.permissions.readers import Principal
from tests.helpers import all_points
from tests.scans import chart_image, logo_image, png_bytes
from tests.vlm_double import VlmDouble
from workers.runtime import open_runtime
from workers.settings import load_settings
from workers.status import format_status, status_report

pytestmark = pytest.mark.integration

CAPTION = "A bar chart of monthly turbine output; a red marker points at a hairline crack."


def _docx(intro: str) -> bytes:
    import docx
    from docx.shared import Inches

    doc = docx.Document()
    doc.add_heading("Plant overview", level=1)
    doc.add_paragraph(intro)
    doc.add_picture(io.BytesIO(png_bytes(logo_image())), width=Inches(0.3))
    doc.add_heading("Output figures", level=1)
    doc.add_paragraph("The chart below shows the monthly output of the plant.")
    doc.add_picture(io.BytesIO(png_bytes(chart_image())), width=Inches(5))
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


@pytest.fixture
def vlm() -> Iterator[VlmDouble]:
    with VlmDouble(reply=lambda body: CAPTION) as double:
        yield double


def _captions(runtime: Any) -> list[Any]:
    points = all_points(runtime.store)
    return [p for p in points if p.payload["metadata"]["kind"] == "image_caption"]


def test_text_first_captions_later_found_by_search_and_cached(
    tmp_path: Path, vlm: VlmDouble
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "plant.docx").write_bytes(_docx("The plant runs three shifts."))
    settings = load_settings(
        data_dir=str(tmp_path / "data"), shares={"docs": str(share)},
        vlm_url=f"{vlm.url}/v1", vlm_model="test-vlm", vlm_retries=0, vlm_cooldown_s=0,
    )  # fmt: skip
    runtime = open_runtime(settings)
    try:
        indexer, catalog = runtime.indexer, runtime.catalog
        vlm.fail_next(10, 503)  # the VLM is down
        report = indexer.sync_share("docs")
        doc = catalog.find("docs", "plant.docx")
        assert report.new == 1 and doc.status == "indexed" and doc.captions == "pending"
        hits = runtime.searcher.search("three shifts", Principal(), k=3)
        assert hits and hits[0].metadata["path"] == "plant.docx"  # the text did not wait
        [chart_text] = _captions(runtime)  # the chart's own text (OCR) does not wait either
        assert "Monthly output" in chart_text.payload["page_content"]
        assert CAPTION not in chart_text.payload["page_content"]
        assert status_report(catalog)["captions_pending"] == 1

        vlm._script.failures.clear()  # the VLM is back: the next reconcile adds the captions
        before = len(vlm.completions)
        indexer.sync_share("docs")
        doc = catalog.find("docs", "plant.docx")
        assert doc.captions == "captioned" and doc.version == 1
        assert len(vlm.completions) == before + 1  # the chart; the logo is decoration
        [caption] = _captions(runtime)
        meta = caption.payload["metadata"]
        assert CAPTION in caption.payload["page_content"]
        assert "Monthly output" in caption.payload["page_content"]  # with the chart's OCR
        assert meta["section"] == "Output figures" and meta["version"] == 1
        assert meta["chunk_index"] == doc.chunk_count - 1
        hits = runtime.searcher.search("hairline crack marker", Principal(), k=3)
        assert hits[0].metadata["kind"] == "image_caption"
        assert hits[0].metadata["path"] == "plant.docx"

        calls = len(vlm.completions)  # an edit of the text: the same chart is not asked again
        (share / "plant.docx").write_bytes(_docx("The plant runs four shifts since May."))
        report = indexer.sync_share("docs")
        assert report.changed == 1 and len(vlm.completions) == calls
        doc = catalog.find("docs", "plant.docx")
        assert doc.version == 2 and doc.captions == "captioned"
        assert [c.payload["metadata"]["version"] for c in _captions(runtime)] == [2]
        assert indexer.sync_share("docs").unchanged == 1  # captioned: left alone
    finally:
        runtime.close()


def test_without_a_vlm_captions_are_off_and_figures_are_still_read(tmp_path: Path) -> None:
    """No VLM: captions are recorded as off, and the text inside the chart (OCR) still becomes
    an ``image_caption`` chunk under its section; the logo gives nothing."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "plant.docx").write_bytes(_docx("The plant runs three shifts."))
    (share / "notes.txt").write_text("no figures in a text file\n")
    settings = load_settings(data_dir=str(tmp_path / "data"), shares={"docs": str(share)})
    runtime = open_runtime(settings)
    try:
        runtime.indexer.sync_share("docs")
        doc = runtime.catalog.find("docs", "plant.docx")
        assert doc.captions == "off"
        assert runtime.catalog.find("docs", "notes.txt").captions is None
        report = status_report(runtime.catalog)
        assert report["captions"] == {"off": 1}  # what operators see
        assert "no VLM configured" in format_status(report)
        [chart] = _captions(runtime)
        assert "Monthly output" in chart.payload["page_content"]
        assert chart.payload["metadata"]["section"] == "Output figures"
        assert chart.payload["metadata"]["chunk_index"] == doc.chunk_count - 1
        # the chart's words find the chart: first by meaning; the text chunk that says "the chart
        # below shows the monthly output" comes first by its terms, so the two tie in hybrid
        # fusion (1/2 + 1/3 each) and either may be listed first
        hits = runtime.searcher.search("monthly output", Principal(), k=3, mode="dense")
        assert hits[0].metadata["kind"] == "image_caption"
        hits = runtime.searcher.search("monthly output", Principal(), k=3)
        assert "image_caption" in {h.metadata["kind"] for h in hits[:2]}
    finally:
        runtime.close()


def test_figure_ocr_can_be_switched_off(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "plant.docx").write_bytes(_docx("The plant runs three shifts."))
    settings = load_settings(
        data_dir=str(tmp_path / "data"), shares={"docs": str(share)}, figure_ocr=False
    )
    runtime = open_runtime(settings)
    try:
        runtime.indexer.sync_share("docs")
        assert runtime.catalog.find("docs", "plant.docx").captions == "off"
        assert _captions(runtime) == []
    finally:
        runtime.close()


LAYOUT = "# Pump inspection\n\n| Part | State |\n|---|---|\n| Impeller | worn |\n"


def test_layout_mode_reads_pages_again_once_the_vlm_is_back(tmp_path: Path) -> None:
    """The VLM layout mode while the VLM is down: the scan is indexed at once from Tesseract and
    marked pending; once the VLM is back the next reconcile replaces it by the transcription
    (same version, no leftover chunk of the provisional reading)."""
    from tests import scans

    share = tmp_path / "share"
    share.mkdir()
    lines = [f"Line {i}: the narwhal bearings outlast the tungsten pendulum." for i in range(30)]
    (share / "scan.pdf").write_bytes(scans.scanned_pdf([scans.page_scan(lines)]))
    with VlmDouble(reply=lambda body: LAYOUT) as vlm:
        settings = load_settings(
            data_dir=str(tmp_path / "data"), shares={"docs": str(share)}, vlm_layout_mode=True,
            vlm_url=f"{vlm.url}/v1", vlm_model="test-vlm", vlm_retries=0, vlm_cooldown_s=0,
        )  # fmt: skip
        runtime = open_runtime(settings)
        try:
            vlm.fail_next(10, 503)
            runtime.indexer.sync_share("docs")
            doc = runtime.catalog.find("docs", "scan.pdf")
            assert doc.status == "indexed" and doc.captions == "pending"
            hits = runtime.searcher.search("narwhal bearings", Principal(), k=1)
            assert hits and hits[0].metadata["path"] == "scan.pdf"  # Tesseract, at once
            provisional = doc.chunk_count
            assert provisional > 1

            vlm._script.failures.clear()
            runtime.indexer.sync_share("docs")
            doc = runtime.catalog.find("docs", "scan.pdf")
            assert doc.captions == "captioned" and doc.version == 1
            points = all_points(runtime.store)
            assert len(points) == doc.chunk_count < provisional
            assert any("Impeller | worn" in p.payload["page_content"] for p in points)
            assert not any("narwhal" in p.payload["page_content"] for p in points)
        finally:
            runtime.close()
