"""``make bench`` (re-sync at scale): ``shareindex sync`` over 10,000 unchanged files.

The files are recorded in the catalog as indexed at their current size, mtime and readers (what
a sync leaves behind; indexing 10,000 files first would only measure embedding), then a whole
``shareindex sync`` process runs over them: a stat per file, the catalog read in one query per
share, nothing hashed, parsed or embedded, torch never imported. Target: under 5 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, run_measured, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--out", default="bench-results/resync.json")
    args = parser.parse_args()

    from index.catalog import SqlCatalog
    from index.permissions.posix import PermissionResolver
    from index.schema import document_id

    work = Path(tempfile.mkdtemp(prefix="shareindex-bench-resync-"))
    share, data = work / "share", work / "data"
    data.mkdir()
    catalog = SqlCatalog(f"sqlite:///{data / 'catalog.db'}")
    readers = PermissionResolver()
    started = time.monotonic()
    for i in range(args.files):
        folder = share / f"d{i // 500:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{i:05d}.txt"
        path.write_text(f"Document {i}: the pump seal of line {i % 40} was checked.\n")
        st = path.stat()
        rel = path.relative_to(share).as_posix()
        doc = document_id("docs", rel)
        allow, deny = readers.resolve("docs", str(share), rel)[0].as_lists()
        catalog.upsert_seen(doc, "docs", rel, st.st_size, st.st_mtime_ns, allow, deny)
        catalog.mark_unchanged(doc, st.st_size, st.st_mtime_ns)
    seeded = time.monotonic() - started
    catalog.close()

    cmd = [sys.executable, "-m", "workers.cli", "sync", "--share", f"docs={share}",
           "--data-dir", str(data), "--json"]  # fmt: skip
    run = run_measured(cmd)
    summary = json.loads(run.stdout)
    shutil.rmtree(work, ignore_errors=True)
    write_result(
        {
            "machine": machine(),
            "files": args.files,
            "process_wall_s": run.wall_s,
            "sync_seconds": summary["seconds"],
            "peak_rss_mb": run.peak_rss_mb,
            "documents": summary["documents"],
            "chunks": summary["chunks"],
            "target_s": 5.0,
            "seed_seconds": round(seeded, 1),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
