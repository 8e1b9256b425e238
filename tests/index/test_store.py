"""The vector store against Qdrant local mode (the same client API as a server)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.acl import Principal, acl_filter
from index.schema import build_metadata, point_id
from index.store import IndexLocked, ModelMismatch, QdrantIndex, make_point, open_client
from ingest.models import SparseVector
from ingest.stages.sparse import SparseEncoder

DIM = 4


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QdrantIndex]:
    idx = QdrantIndex(open_client(path=str(tmp_path / "q")), "test")
    idx.ensure_collection("test-model", DIM)
    yield idx
    idx.close()


def _point(doc: str, version: int, i: int, text: str, acl: list[str], deny: list[str] | None = None,
           dense: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)):  # fmt: skip
    meta = build_metadata(
        doc_id=doc, share="s", path=f"{doc}.txt", version=version, content_hash="h", chunk_index=i,
        chunk_count=1, kind="text", kinds=["text"], page_numbers=[], section=None, mtime_ns=0,
        filetype="txt", embedding_model="test-model", text_hash=f"{doc}{version}{i}", acl=acl, acl_deny=deny or [],
    )  # fmt: skip
    return make_point(doc, version, i, text, dense, SparseEncoder().encode_document(text), meta)


def _search(store: QdrantIndex, principal: Principal, mode: str = "dense", k: int = 10) -> set[str]:
    sparse = SparseEncoder().encode_query("secret plan")
    hits = store.search(principal, [1.0, 0.0, 0.0, 0.0], sparse, k=k, mode=mode)  # type: ignore[arg-type]
    return {h.metadata["doc_id"] for h in hits}


def test_acl_filter_applies_on_every_mode(store: QdrantIndex) -> None:
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


def test_k_results_come_back_when_k_readable_exist(store: QdrantIndex) -> None:
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


def test_same_point_twice_is_one_point(store: QdrantIndex) -> None:
    store.upsert([_point("d", 1, 0, "x", ["everyone"])])
    store.upsert([_point("d", 1, 0, "x", ["everyone"])])
    assert store.count() == 1
    assert point_id("d", 1, 0) == point_id("d", 1, 0) != point_id("d", 2, 0)


def test_old_version_removed_only_by_explicit_call(store: QdrantIndex) -> None:
    store.upsert([_point("d", 1, 0, "old", ["everyone"]), _point("d", 1, 1, "old", ["everyone"])])
    store.upsert([_point("d", 2, 0, "new", ["everyone"])])
    assert store.count() == 3  # both versions readable while the new one is written
    store.upsert([_point("d", 3, 0, "newer, being written", ["everyone"])])
    store.delete_versions_before("d", 2)
    versions = sorted(p.payload["metadata"]["version"] for p in store.document_points("d"))  # type: ignore[index]
    assert versions == [2, 3]  # a newer version in flight is its writer's to keep or remove


def test_stored_vectors_are_keyed_by_text_hash(store: QdrantIndex) -> None:
    store.upsert([_point("d", 1, 0, "alpha", ["everyone"])])
    stored = store.stored_vectors("d", 1)
    assert list(stored) == ["d10"]
    assert stored["d10"].dense == pytest.approx((1.0, 0.0, 0.0, 0.0))
    assert isinstance(stored["d10"].sparse, SparseVector) and stored["d10"].sparse.indices


def test_set_acl_rewrites_payload_in_place(store: QdrantIndex) -> None:
    store.upsert([_point("d", 1, 0, "secret plan", ["everyone"])])
    store.set_acl("d", ["user:alice"], [])
    assert _search(store, Principal()) == set()
    assert _search(store, Principal("alice")) == {"d"}
    assert store.document_points("d")[0].payload["page_content"] == "secret plan"  # type: ignore[index]


def test_another_embedding_model_is_refused(store: QdrantIndex) -> None:
    with pytest.raises(ModelMismatch, match="test-model"):
        store.ensure_collection("other-model", DIM)
    with pytest.raises(ModelMismatch):
        store.ensure_collection("test-model", DIM + 1)
    store.ensure_collection("test-model", DIM)


def test_second_process_gets_a_clear_error(store: QdrantIndex, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom index.store import open_client, IndexLocked\n"
        f"try:\n    open_client(path={str(tmp_path / 'q')!r})\nexcept IndexLocked as e:\n    print(e); sys.exit(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert "held by another ShareIndex process" in proc.stdout
    with pytest.raises(IndexLocked):  # same process, second client: also refused
        open_client(path=str(tmp_path / "q"))


def test_acl_filter_shape_is_what_downstream_apps_copy() -> None:
    flt = acl_filter(Principal("alice", ("eng",)))
    assert flt.must[0].key == "metadata.acl"  # type: ignore[index,union-attr]
    assert flt.must[0].match.any == ["everyone", "user:alice", "group:eng"]  # type: ignore[index,union-attr]
    assert flt.must_not[0].key == "metadata.acl_deny"  # type: ignore[index,union-attr]
