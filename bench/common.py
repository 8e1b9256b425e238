"""Shared by the benchmarks: percentiles, writing the JSON result, measuring a child process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_result(result: dict[str, Any], out: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


class TreePeakRSS:
    """Peak resident memory of a process and its children together, sampled every 50 ms (what a
    machine must hold for it: parse processes count)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(0.05)

    def __enter__(self) -> TreePeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    """One command run as its own process: wall clock from spawn to exit, peak RSS, output."""

    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    returncode: int


def run_measured(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600
) -> Measured:
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    with TreePeakRSS(proc.pid) as rss:
        stdout, stderr = proc.communicate(timeout=timeout)
    wall = time.monotonic() - started
    return Measured(round(wall, 2), round(rss.peak / 2**20, 1), stdout, stderr, proc.returncode)


def chunk_texts(store: Any) -> list[str]:
    """Every chunk text of an index (``page_content`` of each point)."""
    return [p.payload["page_content"] for p in store.points()]


def machine() -> dict[str, Any]:
    import platform

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def export_model_once() -> None:
    """The default embedding backend exports the model on first use into the data dir. A
    benchmark that times steady work in fresh data dirs shares one export instead
    (SHAREINDEX_MODEL_DIR; bench_peer and bench_backends time the export itself)."""
    from workers.components import make_embedder
    from workers.settings import load_settings

    default = Path(__file__).resolve().parent.parent / ".data" / "bench-models"
    os.environ.setdefault("SHAREINDEX_MODEL_DIR", str(default))
    make_embedder(load_settings(data_dir=default.parent / "bench-data")).warm_up()
