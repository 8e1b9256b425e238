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


def measure_latency(tmp: Path, sizes: list[int], queries: int, engine: str) -> dict[str, Any]:
    """ACL-filtered search latency of the index alone (no model, no HTTP) as it grows."""
    import numpy as np

    from index.edge import EdgeIndex
    from index.permissions.readers import Principal
    from index.qdrant import QdrantIndex, open_client
    from index.vectors import VectorIndex, make_point
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
    store: VectorIndex
    if engine == "edge":
        store = EdgeIndex(tmp / f"latency-{engine}", optimize_after=0)
    else:
        store = QdrantIndex(open_client(path=str(tmp / f"latency-{engine}")), "latency")
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
                sparse = SparseVector(tuple(terms), tuple(r.random() for _ in terms))
                meta = {"doc_id": f"d{n // 5}", "version": 1, "chunk_index": n % 5,
                        "acl": r.choice(acl_choices), "acl_deny": [], "share_acl": ["everyone"],
                        "share_acl_deny": []}  # fmt: skip
                points.append(
                    make_point(f"d{n // 5}", 1, n % 5, f"chunk {n}", vectors[i], sparse, meta)
                )
            store.upsert(points)
            written += batch
        if isinstance(store, EdgeIndex):
            store.optimize()  # what the running service does when writes pause
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
            # the embedded index (Qdrant Edge), and qdrant-client's local mode for comparison
            "latency_acl_filtered": {
                engine: measure_latency(
                    Path(tmp), [int(s) for s in args.sizes.split(",")], args.queries, engine
                )
                for engine in ("edge", "qdrant-local")
            },
        }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
