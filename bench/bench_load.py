"""``make bench`` (freshness under load): small changes while large documents are indexed.

The embedded service watches a share. First the large text documents (``--big-mb``, default 6
and 60 MB) are dropped alone and timed until indexed (their solo throughput, chunks/s). Then
they are replaced by others of the same sizes (new text: nothing to reuse) and, while those are
indexed, a small file is dropped every ``--interval`` s; each is timed from its write until the
query API returns it (debounce included). Reported: the small files' p50/p95/max, and the large
documents' throughput under load as a share of their solo throughput.

Targets (issue 19): p50 <= 1.5 s, p95 <= 3 s, large documents at >= 0.9 of solo throughput.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import export_model_once, machine, quantile, write_result
from bench.corpus import _paragraph
from tests.helpers import free_port, running_service


def _write_big(path: Path, megabytes: float, seed: int) -> None:
    rng = random.Random(seed)
    target = int(megabytes * 1_000_000)
    with path.open("w") as fh:
        written = 0
        while written < target:
            paragraph = _paragraph(rng) + "\n\n"
            fh.write(paragraph)
            written += len(paragraph)


def _wait_indexed(runtime: Any, paths: list[str], started: float) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(paths):
        for path in paths:
            record = runtime.catalog.find("bench", path)
            if path not in done and record is not None and record.status == "indexed":
                seconds = time.monotonic() - started
                done[path] = {
                    "chunks": record.chunk_count,
                    "seconds": round(seconds, 1),
                    "chunks_per_s": round(record.chunk_count / seconds, 1),
                }
            elif record is not None and record.status == "failed":
                raise RuntimeError(f"{path} failed: {record.error}")
        time.sleep(0.2)
    return done


def run(big_mb: list[float], interval: float, out: str) -> dict[str, Any]:
    from workers.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="shareindex-load-") as tmp:
        root = Path(tmp) / "share"
        root.mkdir()
        settings = load_settings(
            data_dir=Path(tmp) / "data", shares={"bench": root}, api_port=free_port()
        )
        with running_service(settings) as running:
            runtime, service = running.runtime, running.service
            token = json.loads((settings.data_dir / "service.json").read_text())["token"]
            client = httpx.Client(
                base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            names = [f"big{i}.txt" for i in range(len(big_mb))]
            # solo: the large documents alone
            started = time.monotonic()
            for name, mb in zip(names, big_mb, strict=True):
                _write_big(root / name, mb, seed=1)
            solo = _wait_indexed(runtime, names, started)
            solo_rate = sum(d["chunks"] for d in solo.values()) / max(
                d["seconds"] for d in solo.values()
            )
            # under load: new large documents, and small files dropped every few seconds
            loaded_names = [f"other{i}.txt" for i in range(len(big_mb))]
            for name in names:
                (root / name).unlink()
            started = time.monotonic()
            for name, mb in zip(loaded_names, big_mb, strict=True):
                _write_big(root / name, mb, seed=2)
            loaded: dict[str, dict[str, Any]] = {}
            waiter = threading.Thread(
                target=lambda: loaded.update(_wait_indexed(runtime, loaded_names, started))
            )
            waiter.start()
            latencies: list[float] = []
            status_seen: list[dict[str, Any]] = []
            i = 0
            while waiter.is_alive():
                word = f"loadprobe{i:04d}x"
                page = f"Urgent notice {word}.\n\n" + _paragraph(random.Random(i))
                t = time.monotonic()
                (root / f"notice{i:04d}.txt").write_text(page)
                while True:
                    hits = client.get(
                        "/search", params={"q": word, "k": 1, "mode": "sparse"}
                    ).json()
                    if hits and hits[0]["metadata"]["path"] == f"notice{i:04d}.txt":
                        break
                    time.sleep(0.02)
                latencies.append(time.monotonic() - t)
                if i % 5 == 0:
                    status_seen.append(client.get("/status").json().get("in_flight") or {})
                i += 1
                while time.monotonic() - t < interval and waiter.is_alive():
                    time.sleep(0.05)
            waiter.join()
            loaded_rate = sum(d["chunks"] for d in loaded.values()) / max(
                d["seconds"] for d in loaded.values()
            )
            client.close()
            while not (service.bulk and service.bulk.idle()):  # the last small files too
                time.sleep(0.2)
            verified = service.verify([], False)  # the index equals the share after the load?
    result = {
        "benchmark": "freshness_under_load",
        "machine": machine(),
        "big_documents_mb": big_mb,
        "small_file_interval_s": interval,
        "solo": solo,
        "solo_chunks_per_s": round(solo_rate, 1),
        "under_load": loaded,
        "under_load_chunks_per_s": round(loaded_rate, 1),
        "throughput_share_of_solo": round(loaded_rate / solo_rate, 3),
        "small_files": len(latencies),
        "small_p50_s": round(statistics.median(latencies), 3),
        "small_p95_s": round(quantile(latencies, 0.95), 3),
        "small_max_s": round(max(latencies), 3),
        "status_in_flight_sample": status_seen[len(status_seen) // 2] if status_seen else None,
        "verify_after": {
            "clean": verified["clean"],
            "drift": {k: n for k, n in verified["drift"].items() if n},
            "checked": verified["checked"],
        },  # fmt: skip
        "targets": {"small_p50_s": 1.5, "small_p95_s": 3.0, "throughput_share_of_solo": 0.9},
    }
    write_result(result, out)
    return result


def main() -> None:
    from workers.offline import enforce_offline

    enforce_offline()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big-mb", type=float, nargs="+", default=[6.0, 60.0])
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between small files")
    parser.add_argument("--out", default="bench-results/load.json")
    args = parser.parse_args()
    export_model_once()
    print(json.dumps(run(args.big_mb, args.interval, args.out), indent=2))


if __name__ == "__main__":
    main()
