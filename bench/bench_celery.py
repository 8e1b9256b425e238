"""``make bench``: the distributed (Celery) path against the embedded path on the same corpus.

1. Overhead: ``shareindex sync`` (embedded) and ``shareindex worker`` + ``shareindex watch``
   through Redis on copies of the same mixed corpus; wall time from starting the processes to
   every document indexed (model loading included on both sides), and the ratio.
2. Queue throughput for small documents: a warm worker, then the watcher sends N one-line files;
   documents per second from the watcher's start to the last one indexed.
3. Recovery: a worker killed with -9 in the middle of a long document, a second worker started
   at once; seconds from the kill to the document indexed, with the default lease settings.

Needs Redis (SHAREINDEX_BENCH_REDIS, default redis://127.0.0.1:6379/12; the database is
flushed). Qdrant is in local mode: one threads-pool worker holds the index.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import export_model_once, machine, run_measured, write_result
from bench.corpus import write_mixed_corpus

REDIS = os.environ.get("SHAREINDEX_BENCH_REDIS", "redis://127.0.0.1:6379/12")
CLI = [sys.executable, "-m", "workers.cli"]


def _flush() -> None:
    import redis

    redis.Redis.from_url(REDIS).flushdb()


def _env(data: Path, share: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SHAREINDEX_BROKER_URL": REDIS,
        "SHAREINDEX_DATA_DIR": str(data),
        "SHAREINDEX_SHARES": json.dumps({"docs": str(share)}),
        "SHAREINDEX_WORKER_METRICS_PORT": "0",
        "SHAREINDEX_API_PORT": str(_free_port()),
        **extra,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _stop(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        proc.wait(timeout=120)


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def _catalog(data: Path) -> Any:
    from index.catalog import SqlCatalog

    _wait(lambda: (data / "catalog.db").exists(), 120, "the catalog")
    return SqlCatalog(f"sqlite:///{data / 'catalog.db'}")


def _settled(data: Path, expected: int) -> Callable[[], bool]:
    catalog = None

    def check() -> bool:
        nonlocal catalog
        catalog = catalog or _catalog(data)
        counts = catalog.counts()
        done = counts["indexed"] + counts["failed"] + counts["skipped"]
        return counts["pending"] == 0 and done >= expected

    return check


def _ready(log: Path) -> Callable[[], bool]:
    return lambda: log.exists() and b" ready." in log.read_bytes()


def overhead(work: Path, n_docs: int) -> dict[str, Any]:
    corpus = work / "corpus"
    write_mixed_corpus(corpus, n_docs, long_every=10)
    embedded = run_measured([*CLI, "sync", "--share", f"docs={corpus}", "--data-dir",
                             str(work / "embedded"), "--json"])  # fmt: skip
    summary = json.loads(embedded.stdout)
    processed = sum(v for k, v in summary["documents"].items() if k != "unchanged")

    _flush()
    data = work / "celery"
    env = _env(data, corpus)
    started = time.monotonic()
    worker = _start(["worker"], env, work / "worker.log")
    watcher = _start(["watch"], env, work / "watch.log")
    try:
        _wait(_settled(data, processed), 3600, "the Celery path to finish")
        celery_s = time.monotonic() - started
    finally:
        _stop(watcher)
        _stop(worker)
    counts = _catalog(data).counts()
    return {
        "documents": n_docs,
        "chunks": summary["chunks"]["embedded"],
        "embedded_wall_s": embedded.wall_s,
        "celery_wall_s": round(celery_s, 2),
        "celery_over_embedded": round(celery_s / embedded.wall_s, 3),
        "embedded_documents": summary["documents"],
        "celery_documents": counts,
    }


def throughput(work: Path, n_docs: int) -> dict[str, Any]:
    share = work / "small"
    share.mkdir()
    for i in range(n_docs):
        (share / f"note{i:04d}.txt").write_text(f"Small note {i}: check valve {i % 13} weekly.\n")
    _flush()
    data = work / "tput"
    env = _env(data, share)
    worker = _start(["worker"], env, work / "tput-worker.log")
    try:
        _wait(_ready(work / "tput-worker.log"), 300, "the worker")
        started = time.monotonic()
        watcher = _start(["watch"], env, work / "tput-watch.log")
        _wait(_settled(data, n_docs), 1800, "the small documents")
        seconds = time.monotonic() - started
        _stop(watcher)
    finally:
        _stop(worker)
    return {"documents": n_docs, "seconds": round(seconds, 2),
            "documents_per_s": round(n_docs / seconds, 1)}  # fmt: skip


def recovery(work: Path) -> dict[str, Any]:
    """Default lease settings: what an operator gets."""
    share = work / "recovery"
    share.mkdir()
    _flush()
    data = work / "rec"
    env = _env(data, share)
    first = _start(["worker"], env, work / "rec-worker1.log")
    watcher = _start(["watch"], env, work / "rec-watch.log")
    second = None
    try:
        _wait(_ready(work / "rec-worker1.log"), 300, "the worker")
        text = "\n\n".join(f"Paragraph {i}: bearing {i % 9} of pump {i % 31} was inspected and "
                           f"found worn by {i * 0.13:.2f} mm." for i in range(1500))  # fmt: skip
        (share / "long.txt").write_text(text)
        catalog = _catalog(data)

        def leased() -> bool:
            doc = catalog.find("docs", "long.txt")
            return doc is not None and doc.lease_owner is not None

        _wait(leased, 300, "a worker on the document")
        _stop(first, kill=True)
        killed = time.monotonic()
        second = _start(["worker"], env, work / "rec-worker2.log")

        def indexed() -> bool:
            doc = catalog.find("docs", "long.txt")
            return doc is not None and doc.status == "indexed"

        _wait(indexed, 600, "the document after the kill")
        seconds = time.monotonic() - killed
        doc = catalog.find("docs", "long.txt")
        history = len(catalog.versions(doc.id))
    finally:
        _stop(watcher)
        if second is not None:
            _stop(second)
        _stop(first, kill=True)
    from workers.settings import Settings

    defaults = Settings.model_fields
    return {
        "kill_to_indexed_s": round(seconds, 1),
        "target_s": 120,
        "lease_s": defaults["lease_s"].default,
        "requeue_interval_s": defaults["requeue_interval_s"].default,
        "versions_written": history,
        "chunks": doc.chunk_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--out", default="bench-results/celery.json")
    args = parser.parse_args()
    export_model_once()  # the default backend's one-time export, outside the timings
    work = Path(tempfile.mkdtemp(prefix="shareindex-bench-celery-"))
    try:
        result = {
            "machine": machine(),
            "overhead": overhead(work, args.docs),
            "queue_throughput_small_docs": throughput(work, args.small),
            "kill_recovery": recovery(work),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
