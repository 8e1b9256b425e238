"""``make bench`` (freshness): how fast and how incrementally the index follows the share.

- latency: write a one-page text file into a share watched by the running embedded service, and
  time until the query API returns it (p50/p95 over N files; the debounce is included);
- re-sync of 1,000 unchanged files: seconds, documents parsed, chunks embedded;
- edit one paragraph of a 50-chunk document: chunks re-embedded;
- move a folder of 100 documents: chunks embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import export_model_once, quantile, write_result
from bench.corpus import _paragraph


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_latency(
    runtime: Any, settings: Any, root: Path, files: int, said: list[str]
) -> dict[str, Any]:
    from workers.watch.embedded import EmbeddedService

    service = EmbeddedService(settings, runtime, say=said.append)
    thread = threading.Thread(target=service.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    while not any("reconciled" in line for line in said):
        time.sleep(0.05)
    token = json.loads((settings.data_dir / "service.json").read_text())["token"]
    client = httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    latencies = []
    try:
        for i in range(files):
            word = f"latencyprobe{i:03d}x"
            rng = random.Random(i)
            page = f"Freshness probe {word}.\n\n" + "\n\n".join(_paragraph(rng) for _ in range(4))
            started = time.monotonic()
            (root / f"probe{i:03d}.txt").write_text(page)
            while True:
                hits = client.get("/search", params={"q": word, "k": 1, "mode": "sparse"}).json()
                if hits and hits[0]["metadata"]["path"] == f"probe{i:03d}.txt":
                    break
                time.sleep(0.01)
            latencies.append(time.monotonic() - started)
            time.sleep(0.3)
        revocations = []
        embedded_before = runtime.embedder.embedded_total
        for i in range(min(files, 10)):  # chmod o-r: gone for anonymous searches
            word = f"latencyprobe{i:03d}x"
            started = time.monotonic()
            os.chmod(root / f"probe{i:03d}.txt", 0o640)
            while client.get("/search", params={"q": word, "k": 1, "mode": "sparse"}).json():
                time.sleep(0.01)
            revocations.append(time.monotonic() - started)
            time.sleep(0.3)
        revocation_embeddings = runtime.embedder.embedded_total - embedded_before
    finally:
        client.close()
        service.request_stop()
        thread.join(timeout=30)
        runtime.indexer.stop.clear()
    return {
        "files": files,
        "debounce_s": settings.debounce_s,
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(quantile(latencies, 0.95), 3),
        "max_s": round(max(latencies), 3),
        "target_p50_s": 1.5,
        "revocation_chmod_o-r": {
            "files": len(revocations),
            "p50_s": round(statistics.median(revocations), 3),
            "max_s": round(max(revocations), 3),
            "embeddings": revocation_embeddings,
            "target_s": 2.0,
        },
    }


def _sized_paragraph(rng: Any, words: int) -> str:
    text = ""
    while len(text.split()) < words:
        text = (text + " " + _paragraph(rng)).strip()
    return " ".join(text.split()[:words]) + "."


def measure_incremental(runtime: Any, root: Path) -> dict[str, Any]:
    indexer = runtime.indexer
    parsed: list[str] = []
    submit = runtime.pool.submit
    runtime.pool.submit = lambda src: parsed.append(src.path) or submit(src)
    rng = random.Random(7)
    out: dict[str, Any] = {}

    many = root / "many"
    for i in range(1000):
        (many / f"d{i // 100}").mkdir(parents=True, exist_ok=True)
        (many / f"d{i // 100}" / f"f{i:04d}.txt").write_text(
            f"Small document {i}. " + _paragraph(rng)
        )
    first = indexer.sync_share("bench")
    parsed.clear()
    t = time.monotonic()
    again = indexer.sync_share("bench")
    out["resync_1000_unchanged"] = {
        "seconds": round(time.monotonic() - t, 3),
        "documents_unchanged": again.unchanged,
        "documents_parsed": len(parsed),
        "chunks_embedded": again.embedded,
        "cold_sync_seconds": round(first.seconds, 2),
        "target_seconds": 3.0,
    }

    paragraphs = [_sized_paragraph(rng, words=120) for _ in range(50)]  # ~one chunk each
    doc = root / "big.md"
    doc.write_text("\n\n".join(paragraphs))
    created = indexer.sync_share("bench")
    paragraphs[25] = (
        "This paragraph was edited: the new gasket supplier is Nordic Seals. " + paragraphs[25]
    )
    doc.write_text("\n\n".join(paragraphs))
    edited = indexer.sync_share("bench")
    out["edit_one_paragraph_of_50_chunk_document"] = {
        "chunks": runtime.catalog.find("bench", "big.md").chunk_count,
        "chunks_embedded_first": created.embedded,
        "chunks_embedded_after_edit": edited.embedded,
        "chunks_reused_after_edit": edited.reused,
        "target_max_embedded": 3,
    }

    folder = root / "project"
    for i in range(100):
        (folder / f"doc{i:03d}.md").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"doc{i:03d}.md").write_text(f"# Project note {i}\n\n" + _paragraph(rng))
    indexer.sync_share("bench")
    parsed.clear()
    os.rename(folder, root / "archive-project")
    t = time.monotonic()
    moved = indexer.sync_share("bench")
    out["move_folder_of_100_documents"] = {
        "seconds": round(time.monotonic() - t, 3),
        "documents_moved": moved.moved,
        "documents_parsed": len(parsed),
        "chunks_embedded": moved.embedded,
        "target_embedded": 0,
    }
    runtime.pool.submit = submit
    return out


def main() -> None:
    from workers.offline import enforce_offline

    enforce_offline()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=20, help="files for the latency measurement")
    parser.add_argument("--out", default="bench-results/freshness.json")
    args = parser.parse_args()
    export_model_once()  # the default backend's one-time export, outside the timings

    from workers.runtime import open_runtime
    from workers.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="shareindex-bench-") as tmp:
        root = Path(tmp) / "share"
        root.mkdir()
        settings = load_settings(
            data_dir=Path(tmp) / "data", shares={"bench": root}, api_port=_free_port()
        )
        said: list[str] = []
        runtime = open_runtime(settings, lanes=said.append)  # the service's, with its lanes
        try:
            latency = measure_latency(runtime, settings, root, args.files, said)
        finally:
            runtime.close()
        result = {"benchmark": "freshness", "latency_write_to_searchable": latency}
        runtime = open_runtime(settings)  # passes processed here, as `sync` does
        try:
            result.update(measure_incremental(runtime, root))
        finally:
            runtime.close()
    write_result(result, args.out)


if __name__ == "__main__":
    main()
