"""In-memory stand-ins for unit tests. Each passes the contract suite of the Protocol it stands in
for (``tests/index/test_vectors.py``), so a test that uses one tests what the real ones do."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence

from index.permissions.readers import Access, Principal, may_read
from index.schema import location_metadata
from index.vectors import Hit, IndexPoint, ModelMismatch, SearchMode, StoredPoint
from ingest.models import SparseVector
from ingest.pipeline import StoredVectors

_RRF_K = 60


class MemoryIndex:
    """``index.vectors.VectorIndex`` in a dict: brute-force cosine, sparse dot product, RRF."""

    def __init__(self) -> None:
        self._points: dict[str, IndexPoint] = {}
        self._collection: dict[str, object] | None = None
        self._lock = threading.RLock()

    def ensure_collection(
        self, model: str, dimension: int, sparse_tokenizer: str = "bigram"
    ) -> None:
        wanted = {"model": model, "dimension": dimension, "sparse_tokenizer": sparse_tokenizer}
        with self._lock:
            if self._collection is None:
                self._collection = wanted
            elif self._collection != wanted:
                raise ModelMismatch(f"built with {self._collection}, not {wanted}")

    def close(self) -> None:
        pass

    # -- writes ----------------------------------------------------------------------------
    def upsert(self, points: Sequence[IndexPoint]) -> None:
        with self._lock:
            for p in points:
                self._points[p.id] = p

    def _drop(self, keep: object) -> None:
        with self._lock:
            self._points = {i: p for i, p in self._points.items() if keep(p)}  # type: ignore[operator]

    def delete_version(self, doc_id: str, version: int) -> None:
        self._drop(lambda p: not (_doc(p) == doc_id and _version(p) == version))

    def delete_versions_before(self, doc_id: str, version: int) -> None:
        self._drop(lambda p: not (_doc(p) == doc_id and _version(p) < version))

    def delete_chunks(self, doc_id: str, version: int, indexes: Sequence[int]) -> None:
        wanted = set(indexes)
        self._drop(
            lambda p: (
                not (
                    _doc(p) == doc_id
                    and _version(p) == version
                    and p.metadata["chunk_index"] in wanted
                )
            )
        )

    def delete_document(self, doc_id: str) -> None:
        self._drop(lambda p: _doc(p) != doc_id)

    def _update(self, doc_id: str, fields: dict[str, object]) -> None:
        with self._lock:
            for i, p in list(self._points.items()):
                if _doc(p) == doc_id:
                    meta = {**p.metadata, **fields}
                    self._points[i] = IndexPoint(p.id, p.text, p.dense, p.sparse, meta)

    def set_acl(self, doc_id: str, acl: list[str], acl_deny: list[str]) -> None:
        self._update(doc_id, {"acl": acl, "acl_deny": acl_deny})

    def set_share_readers(self, share: str, allow: list[str], deny: list[str]) -> None:
        with self._lock:
            for i, p in list(self._points.items()):
                if p.metadata["share"] == share:
                    meta = {**p.metadata, "share_acl": allow, "share_acl_deny": deny}
                    self._points[i] = IndexPoint(p.id, p.text, p.dense, p.sparse, meta)

    def set_location(self, doc_id: str, path: str, mtime_ns: int) -> None:
        self._update(doc_id, location_metadata(path, mtime_ns))

    def set_version_metadata(self, doc_id: str, version: int, fields: dict[str, object]) -> None:
        with self._lock:
            for i, p in list(self._points.items()):
                if _doc(p) == doc_id and _version(p) == version:
                    meta = {**p.metadata, **fields}
                    self._points[i] = IndexPoint(p.id, p.text, p.dense, p.sparse, meta)

    # -- reads -----------------------------------------------------------------------------
    def _all(self) -> list[IndexPoint]:
        with self._lock:
            return list(self._points.values())

    def stored_vectors(
        self, doc_id: str, version: int, indexes: Sequence[int] | None = None
    ) -> dict[str, StoredVectors]:
        return {
            p.metadata["text_hash"]: StoredVectors(tuple(p.dense), p.sparse)
            for p in self._all()
            if _doc(p) == doc_id
            and _version(p) == version
            and (indexes is None or p.metadata["chunk_index"] in indexes)
        }

    def stored_hashes(self, doc_id: str, version: int) -> dict[str, int]:
        return {
            p.metadata["text_hash"]: p.metadata["chunk_index"]
            for p in self._all()
            if _doc(p) == doc_id and _version(p) == version
        }

    def document_points(self, doc_id: str) -> list[StoredPoint]:
        return [_stored(p, False) for p in self._all() if _doc(p) == doc_id]

    def points(self, with_vectors: bool = False) -> Iterator[StoredPoint]:
        return iter([_stored(p, with_vectors) for p in self._all()])

    def count(self) -> int:
        return len(self._all())

    def search(
        self,
        principal: Principal,
        dense: Sequence[float],
        sparse: SparseVector,
        k: int = 10,
        mode: SearchMode = "hybrid",
        shares: Sequence[str] = (),
    ) -> list[Hit]:
        readable = [p for p in self._all() if _may_read(principal, p)
                    and (not shares or p.metadata["share"] in shares)]  # fmt: skip
        by_dense = sorted(readable, key=lambda p: -_cosine(dense, p.dense))
        by_sparse = [p for p in sorted(readable, key=lambda p: -_dot(sparse, p.sparse))
                     if _dot(sparse, p.sparse) > 0]  # fmt: skip
        if mode == "dense" or (mode == "hybrid" and not sparse.indices):
            return [_hit(p, _cosine(dense, p.dense)) for p in by_dense[:k]]
        if mode == "sparse":
            return [_hit(p, _dot(sparse, p.sparse)) for p in by_sparse[:k]]
        fused: dict[str, float] = {}
        for ranked in (by_dense[: k * 4], by_sparse[: k * 4]):
            for rank, p in enumerate(ranked):
                fused[p.id] = fused.get(p.id, 0.0) + 1.0 / (_RRF_K + rank + 1)
        best = sorted(fused.items(), key=lambda item: -item[1])[:k]
        return [_hit(self._points[i], score) for i, score in best]

    def document_chunks(
        self,
        doc_id: str,
        principal: Principal,
        indexes: list[int] | None = None,
        version: int | None = None,
    ) -> list[Hit]:
        found = [
            p
            for p in self._all()
            if _doc(p) == doc_id
            and _may_read(principal, p)
            and (indexes is None or p.metadata["chunk_index"] in indexes)
            and (version is None or _version(p) == version)
        ]
        if not found:
            return []
        newest = max(_version(p) for p in found)
        chunks = sorted((p for p in found if _version(p) == newest),
                        key=lambda p: p.metadata["chunk_index"])  # fmt: skip
        return [_hit(p, 1.0) for p in chunks]


def _doc(p: IndexPoint) -> str:
    return str(p.metadata["doc_id"])


def _version(p: IndexPoint) -> int:
    return int(p.metadata["version"])


def _may_read(principal: Principal, p: IndexPoint) -> bool:
    """As the real filter: both layers (a point without the share layer is readable by nobody)."""
    meta = p.metadata
    share = Access(frozenset(meta.get("share_acl", ())), frozenset(meta.get("share_acl_deny", ())))
    return may_read(principal, meta["acl"], meta["acl_deny"], share)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


def _dot(a: SparseVector, b: SparseVector) -> float:
    weights = dict(zip(b.indices, b.values, strict=True))
    return sum(v * weights.get(i, 0.0) for i, v in zip(a.indices, a.values, strict=True))


def _hit(p: IndexPoint, score: float) -> Hit:
    return Hit(p.text, score, dict(p.metadata))


def _stored(p: IndexPoint, with_vectors: bool) -> StoredPoint:
    if not with_vectors:
        return StoredPoint(p.id, {**p.payload, "metadata": dict(p.metadata)})
    return StoredPoint(p.id, p.payload, tuple(p.dense), p.sparse)
