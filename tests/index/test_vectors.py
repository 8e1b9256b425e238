"""The one contract suite of ``index.vectors.VectorIndex``: every implementation runs it (Qdrant
Edge, the embedded default; qdrant-client in local mode, the same client API as a Qdrant server;
the in-memory fake the unit tests use)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from index.edge import EdgeIndex
from index.permissions.readers import Principal
from index.qdrant import QdrantIndex, open_client
from index.schema import build_metadata, point_id
from index.vectors import IndexPoint, ModelMismatch, VectorIndex, make_point
from ingest.models import SparseVector
from ingest.stages.sparse import SparseEncoder
from tests.fakes import MemoryIndex

DIM = 4


@pytest.fixture(params=["edge", "qdrant-local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    idx: VectorIndex
    if request.param == "edge":
        idx = EdgeIndex(tmp_path / "edge")
    elif request.param == "qdrant-local":
        idx = QdrantIndex(open_client(path=str(tmp_path / "q")), "test")
    else:
        idx = MemoryIndex()
    idx.ensure_collection("test-model", DIM)
    yield idx
    idx.close()


def _point(doc: str, version: int, i: int, text: str, acl: list[str], deny: list[str] | None = None,
           dense: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0), count: int = 1) -> IndexPoint:  # fmt: skip
    meta = build_metadata(
        doc_id=doc, share="s", path=f"{doc}.txt", version=version, content_hash="h", chunk_index=i,
        chunk_count=count, kind="text", kinds=["text"], page_numbers=[], section=None, mtime_ns=0,
        filetype="txt", embedding_model="test-model", text_hash=f"{doc}{version}{i}", acl=acl, acl_deny=deny or [],
        share_acl=["everyone"], share_acl_deny=[],
    )  # fmt: skip
    return make_point(doc, version, i, text, dense, SparseEncoder().encode_document(text), meta)


def _search(store: VectorIndex, principal: Principal, mode: str = "dense", k: int = 10) -> set[str]:
    sparse = SparseEncoder().encode_query("secret plan")
    hits = store.search(principal, [1.0, 0.0, 0.0, 0.0], sparse, k=k, mode=mode)  # type: ignore[arg-type]
    return {h.metadata["doc_id"] for h in hits}


def test_acl_filter_applies_on_every_mode(store: VectorIndex) -> None:
    store.upsert([
        _point("public", 1, 0, "secret plan public", ["everyone"]),
        _point("alice", 1, 0, "secret plan alice", ["user:alice"]),
        _point("eng", 1, 0, "secret plan eng", ["group:eng", "user:bob"]),
        _point("nobody", 1, 0, "secret plan nobody", []),
        _point("denied", 1, 0, "secret plan denied", ["group:eng"], deny=["user:carol"]),
    ])  # fmt: skip
    for mode in ("dense", "sparse", "hybrid"):
        assert _search(store, Principal(), mode) == {"public"}
        assert _search(store, Principal("alice"), mode) == {"public", "alice"}
        assert _search(store, Principal("dave", ("eng",)), mode) == {"public", "eng", "denied"}
        assert _search(store, Principal("carol", ("eng",)), mode) == {"public", "eng"}
        assert "nobody" not in _search(store, Principal("root", ("root", "eng")), mode)


def test_k_results_come_back_when_k_readable_exist(store: VectorIndex) -> None:
    forbidden = [
        _point(f"f{i}", 1, 0, "secret plan", ["user:x"], dense=(1.0, 0.0, 0.0, 0.0))
        for i in range(20)
    ]
    allowed = [
        _point(f"a{i}", 1, 0, "other words", ["everyone"], dense=(0.5, 0.5, 0.0, 0.0))
        for i in range(5)
    ]
    store.upsert(forbidden + allowed)
    for mode in ("dense", "hybrid"):
        assert _search(store, Principal(), mode, k=5) == {f"a{i}" for i in range(5)}


def test_same_point_twice_is_one_point(store: VectorIndex) -> None:
    store.upsert([_point("d", 1, 0, "x", ["everyone"])])
    store.upsert([_point("d", 1, 0, "x", ["everyone"])])
    assert store.count() == 1
    assert point_id("d", 1, 0) == point_id("d", 1, 0) != point_id("d", 2, 0)


def test_old_version_removed_only_by_explicit_call(store: VectorIndex) -> None:
    store.upsert([_point("d", 1, 0, "old", ["everyone"]), _point("d", 1, 1, "old", ["everyone"])])
    store.upsert([_point("d", 2, 0, "new", ["everyone"])])
    assert store.count() == 3  # both versions readable while the new one is written
    store.upsert([_point("d", 3, 0, "newer, being written", ["everyone"])])
    store.delete_versions_before("d", 2)
    versions = sorted(p.payload["metadata"]["version"] for p in store.document_points("d"))  # type: ignore[index]
    assert versions == [2, 3]  # a newer version in flight is its writer's to keep or remove


def test_stored_vectors_are_keyed_by_text_hash(store: VectorIndex) -> None:
    store.upsert([_point("d", 1, 0, "alpha", ["everyone"])])
    stored = store.stored_vectors("d", 1)
    assert list(stored) == ["d10"]
    assert stored["d10"].dense == pytest.approx((1.0, 0.0, 0.0, 0.0))
    assert isinstance(stored["d10"].sparse, SparseVector) and stored["d10"].sparse.indices


def test_set_acl_rewrites_payload_in_place(store: VectorIndex) -> None:
    store.upsert([_point("d", 1, 0, "secret plan", ["everyone"])])
    store.set_acl("d", ["user:alice"], [])
    assert _search(store, Principal()) == set()
    assert _search(store, Principal("alice")) == {"d"}
    assert store.document_points("d")[0].payload["page_content"] == "secret plan"  # type: ignore[index]


def test_another_embedding_model_is_refused(store: VectorIndex) -> None:
    with pytest.raises(ModelMismatch):
        store.ensure_collection("other-model", DIM)
    with pytest.raises(ModelMismatch):
        store.ensure_collection("test-model", DIM + 1)
    with pytest.raises(ModelMismatch):
        store.ensure_collection("test-model", DIM, "sudachi")
    store.ensure_collection("test-model", DIM)


def test_document_chunks_obey_the_acl_and_come_from_one_version(store: VectorIndex) -> None:
    store.upsert([_point("d", 1, i, f"old {i}", ["group:eng"], count=3) for i in range(3)])
    store.upsert([_point("d", 2, i, f"new {i}", ["group:eng"], count=3) for i in range(3)])
    eng = Principal("alice", ("eng",))
    assert store.document_chunks("d", Principal()) == []
    newest = store.document_chunks("d", eng)
    assert [h.page_content for h in newest] == ["new 0", "new 1", "new 2"]
    older = store.document_chunks("d", eng, [0, 2], version=1)
    assert [(h.metadata["chunk_index"], h.page_content) for h in older] == [
        (0, "old 0"),
        (2, "old 2"),
    ]


def test_deletes_by_version_chunk_and_document(store: VectorIndex) -> None:
    store.upsert([_point("d", 1, i, f"t{i}", ["everyone"], count=4) for i in range(4)])
    store.upsert([_point("e", 1, 0, "other", ["everyone"])])
    store.delete_chunks("d", 1, [2, 3])
    assert sorted(p.metadata["chunk_index"] for p in store.document_points("d")) == [0, 1]
    store.delete_version("d", 1)
    assert store.document_points("d") == []
    store.delete_document("e")
    assert store.count() == 0


def test_a_move_re_points_every_chunk_and_keeps_its_vectors(store: VectorIndex) -> None:
    store.upsert([_point("d", 1, i, f"t{i}", ["everyone"], count=2) for i in range(2)])
    before = store.stored_vectors("d", 1)
    store.set_location("d", "new/place.txt", 2 * 10**18)
    assert {p.metadata["path"] for p in store.document_points("d")} == {"new/place.txt"}
    assert {p.metadata["filename"] for p in store.document_points("d")} == {"place.txt"}
    assert store.stored_vectors("d", 1) == before


def test_every_point_can_be_read_in_pages_with_its_vectors(store: VectorIndex) -> None:
    store.upsert([_point(f"d{n}", 1, 0, f"text {n}", ["everyone"]) for n in range(600)])
    seen = list(store.points(with_vectors=True))
    assert len(seen) == store.count() == 600
    assert {p.id for p in seen} == {point_id(f"d{n}", 1, 0) for n in range(600)}
    assert all(p.dense == pytest.approx((1.0, 0.0, 0.0, 0.0)) for p in seen)
    assert all(isinstance(p.sparse, SparseVector) and p.sparse.indices for p in seen)
    assert {p.payload["page_content"] for p in store.points()} == {f"text {n}" for n in range(600)}
