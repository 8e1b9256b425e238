"""``make bench`` (CUDA): the GPU worker's embedding path, where a CUDA device is present.

On ShareIndex's own chunk texts of a generated mixed corpus (parsed and chunked, not embedded on
the CPU first): chunks/s of the PyTorch backend on CUDA in half precision with the GPU batch size
(what ``embedding_device = "cuda"`` runs), the same in float32, and the agreement of the fp16
vectors with the fp32 ones. Without a CUDA device the result says so and nothing is measured: the
figures are never estimated.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, write_result


def cuda_device() -> str | None:
    """The CUDA device's name, or None (torch is imported only to ask)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def corpus_texts(n_docs: int, tmp: Path) -> list[str]:
    """ShareIndex's chunk texts of a generated corpus: parsed and chunked as the indexer does."""
    from bench.corpus import write_mixed_corpus
    from ingest import nlp_fallback
    from ingest.models import SourceFile
    from ingest.pipeline import prepare
    from ingest.stages.chunk import ChunkOptions, DocumentChunker, HFTokenCounter
    from ingest.stages.model_files import resolve_model_path, tokenizer_file
    from ingest.stages.parse import ParseOptions
    from workers.settings import load_settings

    nlp_fallback.install()
    share = tmp / "corpus"
    write_mixed_corpus(share, n_docs, long_every=10)
    settings = load_settings(data_dir=tmp / "data")
    tokenizer = tokenizer_file(resolve_model_path(settings.embedding_model))
    assert tokenizer is not None
    chunker = DocumentChunker(
        HFTokenCounter(tokenizer), ChunkOptions(max_tokens=settings.chunk_max_tokens)
    )
    texts: list[str] = []
    for path in sorted(p for p in share.rglob("*") if p.is_file()):
        stat = path.stat()
        source = SourceFile("bench", str(share), str(path.relative_to(share)), stat.st_size,
                            stat.st_mtime_ns)  # fmt: skip
        texts += [c.text for c in prepare(source, ParseOptions(), chunker).chunks]
    return texts


def measure(texts: list[str], fp16: bool, rounds: int, tmp: Path) -> tuple[dict[str, Any], Any]:
    from workers.components import make_embedder
    from workers.settings import load_settings

    settings = load_settings(data_dir=tmp / "data", embedding_device="cuda", embedding_fp16=fp16)
    embedder = make_embedder(settings)
    embedder.warm_up()
    embedder.embed_documents(texts[:512])  # kernels and allocator warmed outside the timing
    best, vectors = 0.0, None
    for _ in range(rounds):
        started = time.monotonic()
        vectors = embedder.embed_documents(texts)
        best = max(best, len(texts) / (time.monotonic() - started))
    figures = {"fp16": fp16, "batch_size": embedder.batch_size, "chunks": len(texts),
               "chunks_per_s": round(best, 1)}  # fmt: skip
    return figures, vectors


def run(n_docs: int, rounds: int, tmp: Path) -> dict[str, Any]:
    device = cuda_device()
    result: dict[str, Any] = {"benchmark": "cuda_embedding", "machine": machine()}
    if device is None:
        result["cuda"] = {"run": False, "reason": "no CUDA device (torch.cuda.is_available() "
                          "is False): the GPU path was not measured on this machine"}  # fmt: skip
        return result
    texts = corpus_texts(n_docs, tmp)
    half, half_vectors = measure(texts, True, rounds, tmp)
    full, full_vectors = measure(texts, False, rounds, tmp)
    cosines = (np.asarray(half_vectors) * np.asarray(full_vectors)).sum(axis=1)
    result["cuda"] = {
        "run": True,
        "device": device,
        "fp16": half,
        "fp32": full,
        "fp16_speedup": round(half["chunks_per_s"] / full["chunks_per_s"], 2),
        "cosine_fp16_to_fp32": {
            "min": round(float(cosines.min()), 4),
            "mean": round(float(cosines.mean()), 4),
        },  # fmt: skip
    }
    return result


def main() -> None:
    from workers.offline import enforce_offline

    enforce_offline()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    parser.add_argument("--out", default="bench-results/cuda.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shareindex-cuda-") as tmp:
        write_result(run(args.docs, args.rounds, Path(tmp)), args.out)


if __name__ == "__main__":
    main()
