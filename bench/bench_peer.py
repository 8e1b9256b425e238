"""``make bench``: ShareIndex against a straightforward LangChain pipeline, same corpus, same model.

The peer, as a LangChain user would write it: DirectoryLoader + UnstructuredFileLoader,
RecursiveCharacterTextSplitter(1000, 150), HuggingFaceEmbeddings (the same local model folder),
QdrantVectorStore in local mode, and LangChain's indexing API ``index()`` with an SQLRecordManager
(SQLite) and ``cleanup="incremental"``. ShareIndex: ``shareindex sync`` with the configured
embedding backend. Each side runs as its own process, cold (empty index) and again over the
unchanged files; measured from outside: whole-process wall clock and the peak RSS of the process
with its children. Then the bound: the embedding model's own throughput, with the same backend, on
ShareIndex's chunk texts from this run. Last, ShareIndex's first run ever: cold, in a fresh data
dir whose model folder is empty, so the run also exports the model (timed apart as well).

Both sides get the same offline conditions: no hub, no telemetry, and ShareIndex's stand-in for
the spaCy model that unstructured would otherwise try to download (offline, PDFs would then come
back empty and the peer would skip their text).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Measured, chunk_texts, machine, run_measured, write_result

COLLECTION = "peer"


# -- the peer, in its own process ------------------------------------------------------------------


def peer_run(share: Path, work: Path, model_path: str) -> dict[str, Any]:
    """One pass of the LangChain pipeline over the share; counts what it embedded."""
    from langchain_classic.indexes import SQLRecordManager, index
    from langchain_community.document_loaders import DirectoryLoader, UnstructuredFileLoader
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_qdrant import QdrantVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from qdrant_client import QdrantClient, models

    embedded = [0]

    class CountingEmbeddings(HuggingFaceEmbeddings):
        """Counts every text the model embeds (the store's own probes included)."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            embedded[0] += len(texts)
            return super().embed_documents(texts)

    started = time.monotonic()
    docs = DirectoryLoader(str(share), loader_cls=UnstructuredFileLoader, silent_errors=True).load()
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=150).split_documents(
        docs
    )
    loaded = time.monotonic()
    embeddings = CountingEmbeddings(model_name=model_path, model_kwargs={"device": "cpu"})
    client = QdrantClient(path=str(work / "qdrant"))
    if not client.collection_exists(COLLECTION):
        size = len(embeddings.embed_query("size"))
        client.create_collection(
            COLLECTION,
            vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE),
        )
    store = QdrantVectorStore(client=client, collection_name=COLLECTION, embedding=embeddings)
    records = SQLRecordManager(f"qdrant/{COLLECTION}", db_url=f"sqlite:///{work / 'records.db'}")
    records.create_schema()
    result = index(chunks, records, store, cleanup="incremental", source_id_key="source")
    client.close()
    return {
        "files": sum(1 for p in share.rglob("*") if p.is_file()),
        "documents": len(docs),
        "chunks": len(chunks),
        "chunks_embedded": result["num_added"] + result["num_updated"],
        "texts_embedded": embedded[0],
        "load_and_split_seconds": round(loaded - started, 2),
        "index_seconds": round(time.monotonic() - loaded, 2),
        "index_result": dict(result),
    }


# -- the driver ------------------------------------------------------------------------------------


def _last_json(out: str) -> dict[str, Any]:
    """A command's JSON result: the last top-level object it printed."""
    start = out.rfind("\n{")
    return dict(json.loads(out[start + 1 if start >= 0 else 0 :]))


def _side(
    m: Measured, embedded: int, extra: dict[str, Any], ok: tuple[int, ...] = (0,)
) -> dict[str, Any]:
    if m.returncode not in ok:
        raise RuntimeError(f"exit {m.returncode}: {m.stderr[-3000:]}")
    return {
        "wall_s": m.wall_s,
        "chunks_embedded": embedded,
        "chunks_per_s": round(embedded / m.wall_s, 2),
        "peak_rss_mb": m.peak_rss_mb,
        **extra,
    }


def run_peer(share: Path, work: Path, model_path: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.bench_peer", "peer-run", "--share", str(share),
           "--work", str(work), "--model", model_path]  # fmt: skip
    m = run_measured(cmd)
    result = _last_json(m.stdout) if m.returncode == 0 else {}
    return _side(m, result.get("chunks_embedded", 0), result)


def run_shareindex(
    share: Path, data: Path, backend: str, model_dir: Path | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "workers.cli", "sync", "--share", f"bench={share}",
           "--data-dir", str(data), "--json"]  # fmt: skip
    env = {"SHAREINDEX_EMBEDDING_BACKEND": backend}
    if model_dir is not None:
        env["SHAREINDEX_MODEL_DIR"] = str(model_dir)
    m = run_measured(cmd, env=env)
    summary = _last_json(m.stdout) if m.stdout.strip() else {}
    chunks = summary.get("chunks", {})
    extra = {"sync_seconds": summary.get("seconds"), "chunks_reused": chunks.get("reused"),
             "documents": summary.get("documents"), "failures": len(summary.get("failures", []))}  # fmt: skip
    # exit 3: some documents failed (recorded, counted in "failures"); the figures still hold
    return _side(m, chunks.get("embedded", 0), extra, ok=(0, 3))


def prepare_model(settings: Any) -> tuple[float, str]:
    """The one-time export of an ONNX backend into the data dir, timed apart from the cold run;
    and the backend the setting runs ("auto" resolved)."""
    from workers.components import make_embedder

    started = time.monotonic()
    embedder = make_embedder(settings)
    embedder.warm_up()
    return round(time.monotonic() - started, 2), embedder.backend


def embedding_bound(settings: Any) -> dict[str, Any]:
    """The model alone, same backend and settings, on every chunk text ShareIndex indexed."""
    from workers.components import make_embedder, open_store

    store = open_store(settings)
    try:
        texts = chunk_texts(store)
    finally:
        store.close()
    embedder = make_embedder(settings)
    embedder.embed_documents(texts[:32])  # load and warm up outside the timing
    started = time.monotonic()
    embedder.embed_documents(texts)
    seconds = time.monotonic() - started
    return {"chunks": len(texts), "seconds": round(seconds, 2),
            "chunks_per_s": round(len(texts) / seconds, 2)}  # fmt: skip


def compare(n_docs: int, long_every: int, backend: str, tmp: Path) -> dict[str, Any]:
    from bench.corpus import write_mixed_corpus
    from ingest.stages.model_files import resolve_model_path
    from workers.settings import load_settings

    share = tmp / "share"
    formats = write_mixed_corpus(share, n_docs, long_every=long_every)
    text_bytes = sum(p.stat().st_size for p in share.rglob("*") if p.is_file())
    settings = load_settings(
        data_dir=tmp / "shareindex", shares={"bench": share}, embedding_backend=backend
    )
    model_path = resolve_model_path(settings.embedding_model)
    export_s, resolved = prepare_model(settings)

    peer_work = tmp / "peer"
    peer_work.mkdir()
    peer = {"cold": run_peer(share, peer_work, model_path)}
    peer["rerun"] = run_peer(share, peer_work, model_path)
    ours = {"cold": run_shareindex(share, settings.data_dir, backend)}
    ours["rerun"] = run_shareindex(share, settings.data_dir, backend)
    bound = embedding_bound(settings)
    # the very first run on a machine also exports the model (while the first documents parse)
    first = tmp / "first-run-ever"
    ours["first_run_ever"] = run_shareindex(share, first / "data", backend, first / "models")
    return {
        "benchmark": "shareindex_vs_langchain",
        "corpus": {
            "documents": n_docs,
            "formats": formats,
            "bytes_on_disk": text_bytes,
            "long_every": long_every,
        },  # fmt: skip
        "embedding_model": settings.embedding_model,
        "shareindex_backend": backend if backend == resolved else f"{backend}: {resolved}",
        "shareindex_model_export_seconds_once": export_s,
        "peer": peer,
        "shareindex": ours,
        "embedding_bound": bound,
        "ratios": {
            **ratios(peer, ours, bound),
            # a first run ever also pays the one-time export of the model into the data dir
            "cold_speedup_with_export": round(
                peer["cold"]["wall_s"] / ours["first_run_ever"]["wall_s"], 2
            ),
        },
        "machine": machine(),
    }


def ratios(peer: dict[str, Any], ours: dict[str, Any], bound: dict[str, Any]) -> dict[str, Any]:
    cold = peer["cold"]["wall_s"] / ours["cold"]["wall_s"]
    rerun = peer["rerun"]["wall_s"] / ours["rerun"]["wall_s"]
    peak = max(ours["cold"]["peak_rss_mb"], ours["rerun"]["peak_rss_mb"])
    peer_peak = max(peer["cold"]["peak_rss_mb"], peer["rerun"]["peak_rss_mb"])
    e2e = ours["cold"]["chunks_per_s"] / bound["chunks_per_s"]
    sync_s = ours["cold"].get("sync_seconds") or ours["cold"]["wall_s"]
    e2e_sync = ours["cold"]["chunks_embedded"] / sync_s / bound["chunks_per_s"]
    return {
        "cold_speedup": round(cold, 2),
        "rerun_speedup": round(rerun, 2),
        "rerun_chunks_embedded": ours["rerun"]["chunks_embedded"],
        "peak_rss_ratio": round(peak / peer_peak, 2),
        "e2e_to_bound_whole_process": round(e2e, 3),
        "e2e_to_bound_sync_only": round(e2e_sync, 3),
        "targets_met": {
            "cold_at_least_2x": cold >= 2,
            "rerun_at_least_10x_and_nothing_embedded": rerun >= 10
            and ours["rerun"]["chunks_embedded"] == 0,
            "peak_rss_not_above_peer": peak <= peer_peak,
            "e2e_at_least_0.7_of_bound": e2e >= 0.7,
        },
    }


def main() -> None:
    from workers.offline import enforce_offline

    enforce_offline()
    if len(sys.argv) > 1 and sys.argv[1] == "peer-run":
        from ingest import nlp_fallback

        nlp_fallback.install()
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("--share", type=Path, required=True)
        p.add_argument("--work", type=Path, required=True)
        p.add_argument("--model", required=True)
        a = p.parse_args()
        print(json.dumps(peer_run(a.share, a.work, a.model)))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--long-every", type=int, default=10, help="every Nth document is long")
    parser.add_argument("--backend", default="auto", help="ShareIndex embedding_backend")
    parser.add_argument("--out", default="bench-results/peer.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shareindex-peer-") as tmp:
        result = compare(args.docs, args.long_every, args.backend, Path(tmp))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
