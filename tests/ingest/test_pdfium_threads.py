"""pdfium from several threads at once: every PDF reader of the project (figures, text layer,
pages to OCR, page rendering) run by four threads on the test PDFs gives the single-thread result
every time, with no false "corrupt" error and no crash. Run in a child process so that a heap
corruption shows as a failed test instead of a dead test run."""

from __future__ import annotations

import json
import subprocess
import sys

STRESS = r"""
import json, sys, threading, time
from ingest.stages.figures import extract_figures
from ingest.stages.ocr import OcrOptions, pdf_pages_to_ocr, render_pdf_pages
from ingest.stages.pdftext import pdf_blocks
from tests import scans

pdfs = [
    scans.pdf_with_figures(pages=3),
    scans.mixed_pdf(["A typed page about the heron pump."], scans.page_scan(["A scanned page"])),
    scans.pdf_with_pasted_scan(["Memo about the ibis crane."], scans.text_image(["PASTED NOTE"])),
    scans.scanned_pdf([scans.page_scan(["Scan one"]), scans.page_scan(["Scan two"])]),
]
options = OcrOptions(dpi=72)

def read(data):
    figures = [f.sha256 for f in extract_figures(data, "pdf")]
    blocks, sizes = pdf_blocks(data)
    pages = pdf_pages_to_ocr(data, options)
    rendered = [len(png) > 0 for png, _ in render_pdf_pages(data, pages[:1], options)]
    return [figures, [b.text for b in blocks], sizes, pages, rendered]

expected = [read(d) for d in pdfs]
errors, done, lock = [], [0], threading.Lock()
deadline = time.monotonic() + float(sys.argv[1])

def work(offset):
    i = offset
    while time.monotonic() < deadline:
        n = i % len(pdfs)
        try:
            got = read(pdfs[n])
            if json.loads(json.dumps(got)) != json.loads(json.dumps(expected[n])):
                errors.append(f"pdf {n}: a different result")
        except Exception as exc:
            errors.append(f"pdf {n}: {type(exc).__name__}: {exc}")
        with lock:
            done[0] += 1
        i += 1

threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"reads": done[0], "errors": errors[:20], "error_count": len(errors)}))
"""


def test_four_threads_reading_pdfs_get_no_false_error_and_no_crash() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", STRESS, "20"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # a crash: "double free or corruption"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error_count"] == 0, result["errors"]
    assert result["reads"] >= 40, result  # enough overlap to have shown the race
