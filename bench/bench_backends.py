"""``make bench`` (backends): each embedding backend against PyTorch, on ShareIndex's own chunks.

Per backend: the one-time export and a later load, chunks/s on the same chunk texts (those of a
generated mixed corpus, as ShareIndex chunks them), agreement of its vectors with PyTorch's
(cosine min / 1st percentile / mean), and retrieval quality on the shipped evaluation set
(tests/data/eval: recall@5 and MRR, dense and hybrid), with the difference to PyTorch.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import chunk_texts, machine, write_result

REPO = Path(__file__).resolve().parent.parent
_RUNTIME = {"onnx": "onnxruntime", "onnx-int8": "onnxruntime", "openvino": "openvino"}


def corpus_chunks(n_docs: int, tmp: Path) -> list[str]:
    """ShareIndex's chunk texts of a generated corpus (one sync with the default backend)."""
    from bench.corpus import write_mixed_corpus
    from workers.runtime import open_runtime
    from workers.settings import load_settings

    share = tmp / "corpus"
    write_mixed_corpus(share, n_docs, long_every=10)
    settings = load_settings(data_dir=tmp / "corpus-data", shares={"bench": share})
    runtime = open_runtime(settings)
    try:
        runtime.indexer.sync_share("bench")
        return chunk_texts(runtime.store)
    finally:
        runtime.close()


def load(backend: str, data_dir: Path) -> tuple[Any, dict[str, Any]]:
    """First use (the export, for the ONNX backends), then a load as every later start does."""
    from workers.components import make_embedder
    from workers.settings import load_settings

    settings = load_settings(data_dir=data_dir, embedding_backend=backend)
    started = time.monotonic()
    make_embedder(settings).warm_up()
    first_use_s = time.monotonic() - started
    started = time.monotonic()
    embedder = make_embedder(settings)
    embedder.warm_up()
    load_s = time.monotonic() - started
    figures = {"first_use_seconds": round(first_use_s, 2), "load_seconds": round(load_s, 2),
               "batch_size": settings.embedding_batch_size}  # fmt: skip
    return embedder, figures


def throughput(embedders: dict[str, Any], texts: list[str], rounds: int) -> dict[str, Any]:
    """Chunks/s of each backend, best of ``rounds``, the backends taking turns within a round so
    that a busy moment of the machine does not favour one; also the vectors of each."""
    best: dict[str, float] = {}
    vectors: dict[str, Any] = {}
    for embedder in embedders.values():
        embedder.embed_documents(texts[:32])
    for _ in range(rounds):
        for name, embedder in embedders.items():
            started = time.monotonic()
            vectors[name] = embedder.embed_documents(texts)
            rate = len(texts) / (time.monotonic() - started)
            best[name] = max(best.get(name, 0.0), rate)
    return {name: (round(best[name], 2), vectors[name]) for name in embedders}


def quality(backend: str, data_dir: Path, tmp: Path) -> dict[str, Any]:
    """Index the evaluation set with this backend and score dense and hybrid retrieval (the sparse
    vectors do not depend on the backend)."""
    from workers.query.client import LocalClient
    from workers.query.evaluate import evaluate, load_questions
    from workers.runtime import open_runtime
    from workers.settings import load_settings

    share = tmp / f"eval-docs-{backend}"
    shutil.copytree(REPO / "tests/data/eval/docs", share)
    settings = load_settings(data_dir=data_dir, shares={"eval": share}, embedding_backend=backend)
    runtime = open_runtime(settings)
    try:
        runtime.indexer.sync_share("eval")
    finally:
        runtime.close()
    client = LocalClient(settings)
    try:
        questions = load_questions(str(REPO / "tests/data/eval/questions.jsonl"))
        report = evaluate(client, questions, 5, ["dense", "hybrid"])
    finally:
        client.close()
    return dict(report["modes"])  # mode -> subset ("all", "exact", "ja", ...) -> scores


def agreement(vectors: Any, reference: Any) -> dict[str, float]:
    cosines = np.asarray((vectors * reference).sum(axis=1))
    return {"min": round(float(cosines.min()), 4),
            "p1": round(float(np.percentile(cosines, 1)), 4),
            "mean": round(float(cosines.mean()), 4)}  # fmt: skip


def run(backends: list[str], n_docs: int, rounds: int, tmp: Path) -> dict[str, Any]:
    texts = corpus_chunks(n_docs, tmp)
    results: dict[str, Any] = {}
    embedders: dict[str, Any] = {}
    for backend in ["torch", *[b for b in backends if b != "torch"]]:
        runtime_module = _RUNTIME.get(backend)
        if runtime_module and importlib.util.find_spec(runtime_module) is None:
            results[backend] = {"skipped": f"{runtime_module} is not installed"}
            continue
        embedders[backend], results[backend] = load(backend, tmp / f"data-{backend}")
    measured = throughput(embedders, texts, rounds)
    for backend, (rate, vectors) in measured.items():
        results[backend].update(
            chunks=len(texts), chunks_per_s=rate,
            cosine_to_torch=agreement(vectors, measured["torch"][1]),
            eval_set=quality(backend, tmp / f"data-{backend}", tmp),
        )  # fmt: skip
    torch_quality = results["torch"]["eval_set"]
    for figures in results.values():
        if "eval_set" in figures:
            figures["eval_set_minus_torch"] = {
                mode: {
                    k: round(v - torch_quality[mode]["all"][k], 3)
                    for k, v in kinds["all"].items()
                    if k != "n"
                }
                for mode, kinds in figures["eval_set"].items()
            }
    return {
        "benchmark": "embedding_backends",
        "rounds": rounds,
        "backends": results,
        "recommendation": recommend(results),
        "machine": machine(),
    }


def recommend(results: dict[str, Any]) -> str:
    """The fastest backend whose dense recall@5 is within 0.02 of PyTorch's."""
    ok = [
        (figures["chunks_per_s"], name)
        for name, figures in results.items()
        if "eval_set_minus_torch" in figures
        and figures["eval_set_minus_torch"]["dense"]["recall@5"] >= -0.02
    ]
    return max(ok)[1]


def main() -> None:
    from workers.offline import enforce_offline

    enforce_offline()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=60, help="corpus size for the chunk texts")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8,openvino")
    parser.add_argument("--rounds", type=int, default=3, help="throughput: best of this many")
    parser.add_argument("--out", default="bench-results/backends.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shareindex-backends-") as tmp:
        result = run(args.backends.split(","), args.docs, args.rounds, Path(tmp))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
