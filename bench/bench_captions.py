"""``make bench`` (captions): VLM requests per document, cold and after an edit of the text.

No VLM can run on the development machine, so the requests go to the VLM test double of the
test suite (tests/vlm_double.py, an OpenAI-compatible server that answers at once): what is
measured is how many requests the pipeline makes, not how fast a VLM answers. Documents: DOCX,
PPTX and PDF with a chart (a figure) and a logo (decoration), and standalone PNG photos. Target:
zero repeated requests for unchanged images after an edit (the content cache).
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import export_model_once, machine, write_result


def _docx(intro: str, chart: bytes, logo: bytes) -> bytes:
    import docx
    from docx.shared import Inches

    doc = docx.Document()
    doc.add_heading("Line report", level=1)
    doc.add_paragraph(intro)
    doc.add_picture(io.BytesIO(logo), width=Inches(0.3))
    doc.add_picture(io.BytesIO(chart), width=Inches(5))
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _corpus(root: Path, n: int, edit: int = 0) -> None:
    from tests.scans import chart_image, logo_image, png_bytes

    logo = png_bytes(logo_image())
    for i in range(n):
        chart = png_bytes(chart_image().rotate(i % 7 * 2, fillcolor="white"))  # distinct images
        intro = f"Report {i}, revision {edit}: output of line {i % 5} this month."
        (root / f"report{i:03d}.docx").write_bytes(_docx(intro, chart, logo))
        if edit == 0 and i % 4 == 0:
            (root / f"photo{i:03d}.png").write_bytes(chart)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=24)
    parser.add_argument("--out", default="bench-results/captions.json")
    args = parser.parse_args()
    export_model_once()  # the default backend's one-time export, outside the timings

    from tests.vlm_double import VlmDouble
    from workers.runtime import open_runtime
    from workers.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="shareindex-bench-captions-"))
    share = work / "share"
    share.mkdir()
    _corpus(share, args.docs)
    result: dict[str, Any] = {"machine": machine()}
    with VlmDouble(reply=lambda body: "A line chart of monthly output.") as vlm:
        settings = load_settings(data_dir=str(work / "data"), shares={"docs": str(share)},
                                 vlm_url=f"{vlm.url}/v1", vlm_model="test-vlm")  # fmt: skip
        runtime = open_runtime(settings)
        try:
            for phase, edit in (("cold", None), ("after_text_edit", 1), ("unchanged_rerun", None)):
                if edit:
                    _corpus(share, args.docs, edit)
                before = len(vlm.completions)
                started = time.monotonic()
                report = runtime.indexer.sync_share("docs")
                docs = report.new + report.changed
                requests = len(vlm.completions) - before
                result[phase] = {
                    "documents_processed": docs,
                    "vlm_requests": requests,
                    "vlm_requests_per_document": round(requests / docs, 3) if docs else 0.0,
                    "seconds": round(time.monotonic() - started, 2),
                }
        finally:
            runtime.close()
    result["target"] = "after_text_edit.vlm_requests == 0 (unchanged images come from the cache)"
    shutil.rmtree(work, ignore_errors=True)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
