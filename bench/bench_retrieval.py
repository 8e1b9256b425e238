"""``make bench`` (retrieval): quality on the shipped evaluation set and query latency at scale.

- recall@5 and MRR of dense, sparse and hybrid search on tests/data/eval (English and Japanese);
- query latency p50/p95 of each mode, with the ACL filter, in Qdrant local mode at 10k and 50k
  chunks (synthetic vectors: latency depends on the count, not on the text).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import export_model_once, quantile, write_result

REPO = Path(__file__).resolve().parent.parent


def measure_quality(tmp: Path) -> dict[str, Any]:
    from workers.query.client import LocalClient
    from workers.query.evaluate import evaluate, load_questions
    from workers.runtime import open_runtime
    from workers.settings import load_settings

    share = tmp / "eval-docs"
    shutil.copytree(REPO / "tests/data/eval/docs", share)
    settings = load_settings(data_dir=tmp / "eval-data", shares={"eval": share})
    runtime = open_runtime(settings)
    try:
        runtime.indexer.sync_share("eval")
    finally:
        runtime.close()
    client = LocalClient(settings)
    try:
        return evaluate(
            client,
            load_questions(str(REPO / "tests/data/eval/questions.jsonl")),
            5,
            ["dense", "sparse", "hybrid"],
        )
    finally:
        client.close()


def measure_latency(tmp: Path, sizes: list[int], queries: int) -> dict[str, Any]:
    import numpy as np
    from qdrant_client import models

    from index.acl import Principal
    from index.qdrant import QdrantIndex, open_client
    from index.schema import DENSE, SPARSE
    from ingest.models import SparseVector

    rng = np.random.default_rng(0)
    r = random.Random(0)
    principal = Principal("alice", ("eng",))
    acl_choices = [
        ["everyone"],
        ["group:eng"],
        ["group:hr"],
        ["user:bob"],
        ["user:alice", "group:hr"],
    ]
    out: dict[str, Any] = {}
    store = QdrantIndex(open_client(path=str(tmp / "latency")), "latency")
    store.ensure_collection("synthetic", 384)
    written = 0
    for size in sizes:
        while written < size:
            batch = min(1000, size - written)
            vectors = rng.standard_normal((batch, 384)).astype("float32")
            points = []
            for i in range(batch):
                n = written + i
                terms = sorted(r.sample(range(50_000), 30))
                points.append(models.PointStruct(
                    id=n,
                    vector={DENSE: vectors[i].tolist(),
                            SPARSE: models.SparseVector(indices=terms, values=[r.random() for _ in terms])},
                    payload={"page_content": f"chunk {n}", "metadata": {
                        "doc_id": f"d{n // 5}", "version": 1, "chunk_index": n % 5,
                        "acl": r.choice(acl_choices), "acl_deny": []}},
                ))  # fmt: skip
            store.upsert(points)
            written += batch
        modes: dict[str, Any] = {}
        for mode in ("dense", "sparse", "hybrid"):
            times = []
            for _ in range(queries):
                dense = rng.standard_normal(384).astype("float32").tolist()
                terms = sorted(r.sample(range(50_000), 6))
                started = time.perf_counter()
                store.search(
                    principal,
                    dense,
                    SparseVector(tuple(terms), tuple(1.0 for _ in terms)),
                    k=10,
                    mode=mode,
                )  # type: ignore[arg-type]
                times.append((time.perf_counter() - started) * 1000)
            modes[mode] = {
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(quantile(times, 0.95), 1),
            }
        out[f"{size}_chunks"] = modes
    store.close()
    return out


def main() -> None:
    from workers.offline import enforce_offline

    enforce_offline()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--out", default="bench-results/retrieval.json")
    args = parser.parse_args()
    export_model_once()  # the default backend's one-time export, outside the timings
    with tempfile.TemporaryDirectory(prefix="shareindex-bench-") as tmp:
        result = {
            "benchmark": "retrieval",
            "quality_eval_set": measure_quality(Path(tmp)),
            "latency_qdrant_local_acl_filtered": measure_latency(
                Path(tmp), [int(s) for s in args.sizes.split(",")], args.queries
            ),
        }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
