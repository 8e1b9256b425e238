"""Retrieval quality: hybrid finds exact terms and Japanese where dense alone misses; the ACL holds
inside every prefetch; neighbours come from the hit's own version; re-ranking reorders."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from index.permissions.readers import Principal
from index.qdrant import QdrantIndex
from index.schema import build_metadata
from index.search import Searcher
from index.vectors import ModelMismatch, make_point
from ingest.stages.rerank import CrossEncoderReranker
from ingest.stages.sparse import SparseEncoder

pytestmark = pytest.mark.integration
ANYONE = Principal()


def _store(embedder, docs: dict[str, list[str]], acl: dict[str, list[str]] | None = None, version: int = 1,
           store: QdrantIndex | None = None) -> QdrantIndex:  # fmt: skip
    if store is None:
        store = QdrantIndex(QdrantClient(":memory:"), "t")
        store.ensure_collection(embedder.model_name, embedder.dimension)
    sparse = SparseEncoder()
    points = []
    for path, chunks in docs.items():
        vectors = embedder.embed_documents(chunks)
        for i, text in enumerate(chunks):
            meta = build_metadata(
                doc_id=path, share="s", path=path, version=version, content_hash="h", chunk_index=i,
                chunk_count=len(chunks), kind="text", kinds=["text"], page_numbers=[], section="Intro",
                mtime_ns=0, filetype="txt", embedding_model=embedder.model_name, text_hash=f"{path}{i}",
                acl=(acl or {}).get(path, ["everyone"]), acl_deny=[],
                share_acl=["everyone"], share_acl_deny=[],
            )  # fmt: skip
            points.append(
                make_point(path, version, i, text, vectors[i], sparse.encode_document(text), meta)
            )
    store.upsert(points)
    return store


def _top(
    searcher: Searcher, query: str, mode: str, k: int = 1, principal: Principal = ANYONE
) -> list[str]:
    return [h.metadata["path"] for h in searcher.search(query, principal, k=k, mode=mode)]  # type: ignore[arg-type]


def test_part_numbers_are_found_by_hybrid_where_dense_misses(embedder) -> None:
    numbers = sorted({"".join(p) for p in itertools.permutations("1479")})[:24]
    docs = {f"cr{n}.txt": [f"Change request for the coolant pump PX-{p}: the impeller clearance was adjusted "
                           "and the motor was realigned."] for n, p in enumerate(numbers)}  # fmt: skip
    searcher = Searcher(_store(embedder, docs), embedder)
    dense_misses = 0
    for n, p in enumerate(numbers):
        query = f"What was changed on pump PX-{p}?"
        assert _top(searcher, query, "hybrid") == [f"cr{n}.txt"], p
        assert _top(searcher, query, "sparse") == [f"cr{n}.txt"], p
        dense_misses += _top(searcher, query, "dense") != [f"cr{n}.txt"]
    assert dense_misses >= 3  # the near-identical numbers look alike to the dense model


JA = {
    "ja1.txt": [
        "溶接ロボットの校正は毎週月曜日に品質保証部が実施します。校正記録は三年間保管します。"
    ],
    "ja2.txt": ["冷却水ポンプの点検は毎日始業前に行います。振動と異音を確認してください。"],
    "ja3.txt": ["新入社員の安全教育は入社初日に実施します。保護具の着用方法を説明します。"],
    "ja4.txt": ["油圧プレスの安全装置は毎月点検します。光電管センサーの動作を確認します。"],
    "ja5.txt": ["塗装ラインの温度管理は三十分ごとに記録します。乾燥炉の温度は百八十度です。"],
}


def test_japanese_queries_find_japanese_documents_through_the_sparse_side(embedder) -> None:
    searcher = Searcher(_store(embedder, JA), embedder)
    questions = {
        "乾燥炉の温度は何度ですか": "ja5.txt",
        "溶接ロボットの校正はいつ行いますか": "ja1.txt",
        "油圧プレスの安全装置の点検": "ja4.txt",
        "冷却水ポンプの点検はいつですか": "ja2.txt",
        "新入社員の安全教育": "ja3.txt",
    }
    assert _top(searcher, "乾燥炉の温度は何度ですか", "dense") != [
        "ja5.txt"
    ]  # the English model alone misses
    for question, expected in questions.items():
        assert _top(searcher, question, "hybrid") == [expected], question


def test_a_forbidden_best_match_never_appears_and_k_allowed_results_still_come_back(
    embedder,
) -> None:
    docs = {"secret.txt": ["The merger with Nordfjord Castings closes in May."]}
    docs |= {
        f"pub{i}.txt": [f"Public note {i} about Nordfjord Castings delivery schedules."]
        for i in range(8)
    }
    searcher = Searcher(_store(embedder, docs, acl={"secret.txt": ["group:board"]}), embedder)
    query = "merger with Nordfjord Castings"
    for mode in ("dense", "sparse", "hybrid"):
        assert _top(searcher, query, mode, principal=Principal("x", ("board",))) == ["secret.txt"]
        top5 = _top(searcher, query, mode, k=5)
        assert "secret.txt" not in top5
        assert len(top5) == 5


def test_neighbours_come_from_the_same_version_and_obey_the_acl(embedder) -> None:
    v1 = {
        "doc.txt": [
            "Old intro of the boiler manual.",
            "Old middle about boiler valves.",
            "Old end.",
        ]
    }
    store = _store(embedder, v1, acl={"doc.txt": ["group:ops"]})
    v2 = {"doc.txt": ["New intro.", "New boiler valve section.", "New section two.", "New end."]}
    _store(
        embedder, v2, acl={"doc.txt": ["group:ops"]}, version=2, store=store
    )  # both versions, mid-update
    searcher = Searcher(store, embedder)
    ops = Principal("a", ("ops",))
    for hit in searcher.search("boiler valves", ops, k=4, mode="dense", context=2):
        assert hit.context is not None and hit.context["section"] == "Intro"
        version = hit.metadata["version"]
        prefix = "Old" if version == 1 else "New"
        neighbours = hit.context["before"] + hit.context["after"]
        assert neighbours and all(n["page_content"].startswith(prefix) for n in neighbours)
        i = hit.metadata["chunk_index"]
        assert [n["chunk_index"] for n in hit.context["before"]] == list(range(max(0, i - 2), i))
    assert searcher.search("boiler valves", ANYONE, k=4, context=2) == []


def test_a_cross_encoder_reranks_the_candidates(embedder, model_path: str, tmp_path: Path) -> None:
    """No cross-encoder weights can be downloaded here: one is built from the local MiniLM with a
    fresh scoring head. Its scores mean little, but the order must be exactly the order they give."""
    from sentence_transformers import CrossEncoder

    path = tmp_path / "cross-encoder"
    CrossEncoder(model_path, num_labels=1, device="cpu").save(str(path))
    reranker = CrossEncoderReranker(str(path))
    docs = {
        f"d{i}.txt": [f"Note {i}: the pump seal and bearing were checked on day {i}."]
        for i in range(10)
    }
    store = _store(embedder, docs)
    searcher = Searcher(store, embedder, reranker=reranker, rerank_candidates=10)
    hits = searcher.search("pump seal check", ANYONE, k=5)
    expected = sorted(
        reranker.scores("pump seal check", [d[0] for d in docs.values()]), reverse=True
    )[:5]
    assert [h.score for h in hits] == pytest.approx(expected)


def test_a_missing_reranker_is_a_clear_error(tmp_path: Path) -> None:
    from ingest.stages.model_files import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="neither a local folder"):
        CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2").warm_up()
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match="cannot load re-ranking model"):
        CrossEncoderReranker(str(empty)).warm_up()


def test_sudachi_tokenizer_words_and_no_mixing(embedder) -> None:
    sudachi = SparseEncoder("sudachi")
    words = sudachi.terms("溶接ロボットの校正は毎週月曜日に実施します。")
    assert {"溶接", "ロボット", "校正", "毎週", "月曜日", "実施"} <= set(words)
    assert "の" not in words and "は" not in words  # particles dropped
    store = QdrantIndex(QdrantClient(":memory:"), "t")
    store.ensure_collection(embedder.model_name, embedder.dimension, "sudachi")
    with pytest.raises(ModelMismatch, match="sparse tokenizer 'sudachi'"):
        store.ensure_collection(embedder.model_name, embedder.dimension, "bigram")


def test_eval_command_on_the_shipped_set(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    eval_dir = Path(__file__).resolve().parents[1] / "data" / "eval"
    share = tmp_path / "docs"
    shutil.copytree(eval_dir / "docs", share)
    assert (
        run_cli("sync", "--share", f"eval={share}", "--data-dir", str(tmp_path / "d")).returncode
        == 0
    )
    proc = run_cli(
        "eval", str(eval_dir / "questions.jsonl"), "--data-dir", str(tmp_path / "d"), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["questions"] == 32 and set(report["modes"]) == {"dense", "sparse", "hybrid"}
    for mode in report["modes"].values():
        assert set(mode) == {"all", "exact", "semantic_en", "ja", "cross"}
        assert all(0 <= v["recall@5"] <= 1 and 0 <= v["mrr"] <= 1 for v in mode.values())
    modes = report["modes"]
    assert modes["hybrid"]["exact"]["mrr"] > modes["dense"]["exact"]["mrr"]
    assert modes["hybrid"]["ja"]["mrr"] > modes["dense"]["ja"]["mrr"]
    assert modes["hybrid"]["all"]["mrr"] > modes["dense"]["all"]["mrr"]


def test_query_and_passage_prefixes_reach_the_model(embedder) -> None:
    """E5-style models want "query: " / "passage: " before the text; configuration supplies them."""
    import numpy as np

    from ingest.stages.embed import SentenceEmbedder

    e5_style = SentenceEmbedder(query_prefix="query: ", passage_prefix="passage: ")
    e5_style._model = embedder.model  # the same weights, already loaded
    raw = embedder.model.encode(
        ["query: pump seal", "passage: the seal"], normalize_embeddings=True
    )
    assert np.allclose(e5_style.embed_query("pump seal"), raw[0], atol=1e-5)
    assert np.allclose(e5_style.embed_documents(["the seal"])[0], raw[1], atol=1e-5)
    assert not np.allclose(embedder.embed_query("pump seal"), raw[0], atol=1e-3)
