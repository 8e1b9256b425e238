"""``make bench``: cold sync of a generated mixed corpus, against pure embedding of the same chunks.

Writes JSON with documents/s, chunks/s, peak RSS (this process and the whole process tree, parse
processes included), and the ratio of end-to-end chunks/s to the embedding model's own throughput
on the same chunk texts, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import chunk_texts, export_model_once, write_result


class PeakRSS:
    """Samples the RSS of this process and of its whole tree (parse processes) every 100 ms."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.self_peak = 0
        self.tree_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                own = self.proc.memory_info().rss
                tree = own + sum(c.memory_info().rss for c in self.proc.children(recursive=True))
            except psutil.Error:
                continue
            self.self_peak, self.tree_peak = max(self.self_peak, own), max(self.tree_peak, tree)
            self._stop.wait(0.1)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(n_docs: int, workdir: Path) -> dict[str, Any]:
    from bench.corpus import write_mixed_corpus
    from workers.runtime import open_runtime
    from workers.settings import load_settings

    share = workdir / "share"
    started = time.monotonic()
    formats = write_mixed_corpus(share, n_docs)
    generate_s = time.monotonic() - started

    settings = load_settings(data_dir=workdir / "data", shares={"bench": share})
    with PeakRSS() as rss:
        t0 = time.monotonic()
        runtime = open_runtime(settings)
        startup_s = time.monotonic() - t0
        try:
            t1 = time.monotonic()
            report = runtime.indexer.sync_share("bench")
            sync_s = time.monotonic() - t1
            texts = chunk_texts(runtime.store)
            t2 = time.monotonic()
            runtime.embedder.embed_documents(texts)
            embed_s = time.monotonic() - t2
        finally:
            runtime.close()

    docs = report.new + report.changed
    e2e_cps = len(texts) / sync_s
    pure_cps = len(texts) / embed_s
    return {
        "benchmark": "cold_sync",
        "documents": docs,
        "documents_failed": report.failed,
        "formats": formats,
        "chunks": len(texts),
        "chunks_embedded": report.embedded,
        "generate_seconds": round(generate_s, 2),
        "startup_seconds": round(startup_s, 2),
        "sync_seconds": round(sync_s, 2),
        "documents_per_second": round(docs / sync_s, 2),
        "chunks_per_second": round(e2e_cps, 2),
        "pure_embedding_seconds": round(embed_s, 2),
        "pure_embedding_chunks_per_second": round(pure_cps, 2),
        "ratio_e2e_to_pure_embedding": round(e2e_cps / pure_cps, 3),
        "peak_rss_mb_main": round(rss.self_peak / 2**20, 1),
        "peak_rss_mb_all_processes": round(rss.tree_peak / 2**20, 1),
        "settings": {
            "embedding_model": settings.embedding_model,
            "embedding_batch_size": settings.embedding_batch_size,
            "chunk_max_tokens": settings.chunk_max_tokens,
            "parse_workers": settings.parse_workers,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def main() -> None:
    from workers.offline import enforce_offline

    enforce_offline()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--out", default="bench-results/sync.json")
    args = parser.parse_args()
    export_model_once()  # the default backend's one-time export, outside the timings
    with tempfile.TemporaryDirectory(prefix="shareindex-bench-") as tmp:
        result = run(args.docs, Path(tmp))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
