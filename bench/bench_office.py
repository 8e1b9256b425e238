"""``make bench`` (legacy Office): seconds per Office 97-2003 document, conversion included, the
way a parse process reads them.

Word, Excel and PowerPoint 97-2003 files (a page of Japanese and English text, a sheet, a slide)
are made by LibreOffice from documents written here, then parsed with ``parse_bytes`` in one
process, twice: through the long-lived LibreOffice of the parse process (started once, its cost
paid by the first document and reported apart) and, for comparison, with one ``soffice
--convert-to`` per document (the way without python3-uno).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import quantile, write_result


def _documents(work: Path, count: int) -> list[tuple[str, bytes]]:
    from tests.office import soffice, write_source

    kinds = [("doc", "docx"), ("xls", "xlsx"), ("ppt", "pptx")]
    made = {}
    for ext, kind in kinds:
        source = work / f"sample-{ext}.{kind}"
        write_source(source, kind, f"点検記録 {ext}: the heron valve is checked every spring.")
        soffice(work / "profile", ext, source, work)
        made[ext] = (work / f"sample-{ext}.{ext}").read_bytes()
    return [(kinds[i % 3][0], made[kinds[i % 3][0]]) for i in range(count)]


def _run(docs: list[tuple[str, bytes]], listener: bool) -> dict[str, Any]:
    from ingest.stages import office
    from ingest.stages.parse import ParseOptions, parse_bytes

    office._uno = None if listener else False  # the way under test
    seconds = []
    for ext, data in docs:
        started = time.perf_counter()
        elements = parse_bytes(data, ext, ParseOptions())
        seconds.append(time.perf_counter() - started)
        assert any("heron valve" in el.text for el in elements), ext
    if office._running is not None:
        office._running.stop()
        office._running = None
    warm = seconds[1:]
    return {
        "documents": len(seconds),
        "first_s": round(seconds[0], 3),
        "per_document_s": round(statistics.mean(warm), 3),
        "p50_s": round(quantile(warm, 0.5), 3),
        "p95_s": round(quantile(warm, 0.95), 3),
        "documents_per_minute": round(60 / statistics.mean(warm), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--out", default="bench-results/office.json")
    args = parser.parse_args()
    from ingest import nlp_fallback
    from ingest.stages import office

    if office.soffice_binary() is None:
        write_result({"skipped": "LibreOffice (soffice) is not installed"}, args.out)
        return
    nlp_fallback.install()
    work = Path(tempfile.mkdtemp(prefix="shareindex-bench-office-"))
    try:
        docs = _documents(work, max(args.docs, 4))
        result: dict[str, Any] = {
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            "python3_uno": office.uno_available(),
        }
        if result["python3_uno"]:
            result["long_lived_soffice"] = _run(docs, listener=True)
        result["soffice_per_document"] = _run(docs[: max(4, len(docs) // 3)], listener=False)
        if result["python3_uno"]:
            per = result["long_lived_soffice"]["per_document_s"]
            result["speedup"] = round(result["soffice_per_document"]["per_document_s"] / per, 1)
        write_result(result, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
