"""``VectorIndex`` on qdrant-client: a Qdrant server, or local mode in the data dir."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from index.permissions.filter import acl_filter
from index.permissions.readers import Principal
from index.schema import (
    CONTENT_KEY,
    DENSE,
    INDEXED_FIELDS,
    METADATA_KEY,
    SPARSE,
    location_metadata,
    point_id,
)
from index.vectors import (
    Hit,
    IndexLocked,
    IndexPoint,
    IndexUnavailable,
    ModelMismatch,
    SearchMode,
    StoredPoint,
    StoreError,
)
from ingest.models import SparseVector
from ingest.pipeline import StoredVectors

__all__ = ["IndexUnavailable", "QdrantIndex", "StoreError", "open_client"]

_WRITE_BATCH = 256


def open_client(
    *, path: str | None = None, url: str | None = None, api_key: str | None = None
) -> QdrantClient:
    """A client for a Qdrant server (``url``) or for local mode in ``path``."""
    if url:
        return QdrantClient(url=url, api_key=api_key, timeout=30)
    try:
        return QdrantClient(path=path)
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise IndexLocked(
                f"the index in {path} is held by another ShareIndex process (Qdrant local mode "
                "allows one process); stop it, or query through its API"
            ) from exc
        raise


class QdrantIndex:
    """One collection. Thread-safe: local mode is not, so every call takes a lock."""

    def __init__(self, client: QdrantClient, collection: str) -> None:
        self.client = client
        self.collection = collection
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self.client.close()

    # -- collection ------------------------------------------------------------------------
    def ensure_collection(
        self, model: str, dimension: int, sparse_tokenizer: str = "bigram"
    ) -> None:
        """Create the collection, or check it was built with this model, dimension and sparse
        tokenizer: vectors of another model, or term ids of another tokenizer, never mix."""
        wanted = {
            "embedding_model": model,
            "dimension": dimension,
            "sparse_tokenizer": sparse_tokenizer,
        }
        with self._lock:
            if not self.client.collection_exists(self.collection):
                self.client.create_collection(
                    self.collection,
                    vectors_config={
                        DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)
                    },
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                    metadata=wanted,
                )
                self._index_fields(INDEXED_FIELDS)
                return
            info = self.client.get_collection(self.collection)
            meta = info.config.metadata or {}
            # a field a newer release filters on (the share layer): indexed now
            self._index_fields({f: k for f, k in INDEXED_FIELDS.items()
                                if f not in (info.payload_schema or {})})  # fmt: skip
        if meta.get("embedding_model") != model or meta.get("dimension") != dimension:
            raise ModelMismatch(
                f"collection {self.collection!r} was built with embedding model "
                f"{meta.get('embedding_model')!r} ({meta.get('dimension')} dims), not {model!r} "
                f"({dimension} dims); use that model, another collection, or a new data dir"
            )
        built = meta.get("sparse_tokenizer", "bigram")
        if built != sparse_tokenizer:
            raise ModelMismatch(
                f"collection {self.collection!r} was built with sparse tokenizer {built!r}, not "
                f"{sparse_tokenizer!r}; use that tokenizer, another collection, or a new data dir"
            )

    def _index_fields(self, fields: dict[str, str]) -> None:
        # local mode accepts payload indexes but warns; servers need them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for field, kind in fields.items():
                self.client.create_payload_index(self.collection, field, field_schema=kind)  # type: ignore[arg-type]

    # -- writes ----------------------------------------------------------------------------
    def upsert(self, points: Sequence[IndexPoint]) -> None:
        structs = [_struct(p) for p in points]
        with self._lock:
            for start in range(0, len(structs), _WRITE_BATCH):
                self.client.upsert(
                    self.collection, points=structs[start : start + _WRITE_BATCH], wait=True
                )

    def delete_versions_before(self, doc_id: str, version: int) -> None:
        """Remove the points of ``doc_id``'s versions older than ``version`` (after it is written
        and claimed). Newer numbers are never touched: their writer may be between its upsert
        and its claim, and it removes the older ones itself when it claims."""
        self._delete(
            models.Filter(
                must=[
                    _match("metadata.doc_id", doc_id),
                    models.FieldCondition(key="metadata.version", range=models.Range(lt=version)),
                ]
            )
        )

    def delete_version(self, doc_id: str, version: int) -> None:
        self._delete(
            models.Filter(
                must=[_match("metadata.doc_id", doc_id), _match("metadata.version", version)]
            )
        )

    def delete_chunks(self, doc_id: str, version: int, indexes: Sequence[int]) -> None:
        """Points of one version by chunk number (by id: no scan)."""
        if not indexes:
            return
        ids: list[models.ExtendedPointId] = [point_id(doc_id, version, i) for i in indexes]
        with self._lock:
            self.client.delete(
                self.collection, points_selector=models.PointIdsList(points=ids), wait=True
            )

    def delete_document(self, doc_id: str) -> None:
        self._delete(models.Filter(must=[_match("metadata.doc_id", doc_id)]))

    def _delete(self, flt: models.Filter) -> None:
        with self._lock:
            self.client.delete(
                self.collection, points_selector=models.FilterSelector(filter=flt), wait=True
            )

    # -- reads -----------------------------------------------------------------------------
    def stored_vectors(
        self, doc_id: str, version: int, indexes: Sequence[int] | None = None
    ) -> dict[str, StoredVectors]:
        conditions: list[Any] = [
            _match("metadata.doc_id", doc_id), _match("metadata.version", version)
        ]  # fmt: skip
        if indexes is not None:
            if not indexes:
                return {}
            conditions.append(
                models.FieldCondition(
                    key="metadata.chunk_index", match=models.MatchAny(any=list(indexes))
                )
            )
        out: dict[str, StoredVectors] = {}
        for point in self._pages(models.Filter(must=conditions), with_vectors=True):
            if point.dense is not None and point.sparse is not None:
                out[point.metadata["text_hash"]] = StoredVectors(point.dense, point.sparse)
        return out

    def stored_hashes(self, doc_id: str, version: int) -> dict[str, int]:
        flt = models.Filter(
            must=[_match("metadata.doc_id", doc_id), _match("metadata.version", version)]
        )
        return {
            p.metadata["text_hash"]: int(p.metadata["chunk_index"])
            for p in self._pages(flt, with_vectors=False)
        }

    def _scroll(self, flt: models.Filter | None, with_vectors: bool = False) -> list[StoredPoint]:
        return list(self._pages(flt, with_vectors))

    def _pages(self, flt: models.Filter | None, with_vectors: bool) -> Iterator[StoredPoint]:
        offset = None
        while True:
            with self._lock:
                batch, offset = self.client.scroll(
                    self.collection,
                    scroll_filter=flt,
                    limit=256,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            yield from (_stored(r) for r in batch)
            if offset is None:
                return

    def points(self, with_vectors: bool = False) -> Iterator[StoredPoint]:
        return self._pages(None, with_vectors)

    def count(self) -> int:
        with self._lock:
            return self.client.count(self.collection, exact=True).count

    def document_points(self, doc_id: str) -> list[StoredPoint]:
        return self._scroll(models.Filter(must=[_match("metadata.doc_id", doc_id)]))

    def search(
        self,
        principal: Principal,
        dense: Sequence[float],
        sparse: SparseVector,
        k: int = 10,
        mode: SearchMode = "hybrid",
        shares: Sequence[str] = (),
    ) -> list[Hit]:
        """Top-k chunks ``principal`` may read. The ACL filter is applied inside every prefetch."""
        flt = acl_filter(principal, shares)
        sparse_q = models.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
        with self._lock:
            if mode == "dense" or (mode == "hybrid" and not sparse.indices):
                res = self.client.query_points(
                    self.collection,
                    query=list(dense),
                    using=DENSE,
                    query_filter=flt,
                    limit=k,
                    with_payload=True,
                )
            elif mode == "sparse":
                res = self.client.query_points(
                    self.collection,
                    query=sparse_q,
                    using=SPARSE,
                    query_filter=flt,
                    limit=k,
                    with_payload=True,
                )
            else:
                res = self.client.query_points(
                    self.collection,
                    prefetch=[
                        models.Prefetch(query=list(dense), using=DENSE, filter=flt, limit=k * 4),
                        models.Prefetch(query=sparse_q, using=SPARSE, filter=flt, limit=k * 4),
                    ],
                    query=models.FusionQuery(fusion=models.Fusion.RRF),
                    # no outer filter: the fused points come only from the filtered prefetches
                    limit=k,
                    with_payload=True,
                )
        return [
            Hit(
                page_content=(p.payload or {}).get(CONTENT_KEY, ""),
                score=float(p.score),
                metadata=(p.payload or {}).get(METADATA_KEY, {}),
            )
            for p in res.points
        ]

    def document_chunks(
        self,
        doc_id: str,
        principal: Principal,
        indexes: list[int] | None = None,
        version: int | None = None,
    ) -> list[Hit]:
        """Chunks of a document that ``principal`` may read, in order: of ``version``, or of the
        newest version present (two exist while a new one replaces the old)."""
        conditions: list[models.Condition] = [
            acl_filter(principal),
            _match("metadata.doc_id", doc_id),
        ]
        if indexes is not None:
            conditions.append(
                models.FieldCondition(
                    key="metadata.chunk_index", match=models.MatchAny(any=indexes)
                )
            )
        if version is not None:
            conditions.append(_match("metadata.version", version))
        records = self._scroll(models.Filter(must=conditions))
        if not records:
            return []
        newest = max((r.payload or {})[METADATA_KEY]["version"] for r in records)
        chunks = [r for r in records if (r.payload or {})[METADATA_KEY]["version"] == newest]
        chunks.sort(key=lambda r: (r.payload or {})[METADATA_KEY]["chunk_index"])
        return [
            Hit((r.payload or {}).get(CONTENT_KEY, ""), 1.0, (r.payload or {})[METADATA_KEY])
            for r in chunks
        ]

    def set_acl(self, doc_id: str, acl: list[str], acl_deny: list[str]) -> None:
        """Permission change: rewrite the ACL of every point of the document in place."""
        self._set_metadata(doc_id, {"acl": acl, "acl_deny": acl_deny})

    def set_share_readers(self, share: str, allow: list[str], deny: list[str]) -> None:
        """A change of the share's own permissions: every point of the share, in place."""
        flt = models.Filter(must=[_match("metadata.share", share)])
        with self._lock:
            self.client.set_payload(
                self.collection, payload={"share_acl": allow, "share_acl_deny": deny},
                key=METADATA_KEY, points=models.FilterSelector(filter=flt), wait=True,
            )  # fmt: skip

    def set_location(self, doc_id: str, path: str, mtime_ns: int) -> None:
        """A moved or renamed file: re-point every point of the document, vectors untouched."""
        self._set_metadata(doc_id, location_metadata(path, mtime_ns))

    def set_version_metadata(self, doc_id: str, version: int, fields: dict[str, Any]) -> None:
        flt = models.Filter(
            must=[_match("metadata.doc_id", doc_id), _match("metadata.version", version)]
        )
        with self._lock:
            self.client.set_payload(
                self.collection, payload=fields, key=METADATA_KEY,
                points=models.FilterSelector(filter=flt), wait=True,
            )  # fmt: skip

    def _set_metadata(self, doc_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self.client.set_payload(
                self.collection,
                payload=fields,
                key=METADATA_KEY,
                points=models.FilterSelector(
                    filter=models.Filter(must=[_match("metadata.doc_id", doc_id)])
                ),
                wait=True,
            )


def _match(key: str, value: str | int) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _struct(point: IndexPoint) -> models.PointStruct:
    return models.PointStruct(
        id=point.id,
        vector={
            DENSE: list(point.dense),
            SPARSE: models.SparseVector(
                indices=list(point.sparse.indices), values=list(point.sparse.values)
            ),
        },
        payload=point.payload,
    )


def _stored(record: models.Record) -> StoredPoint:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    dense, sparse = vectors.get(DENSE), vectors.get(SPARSE)
    return StoredPoint(
        id=str(record.id),
        payload=record.payload or {},
        dense=tuple(float(x) for x in dense) if isinstance(dense, list) else None,  # type: ignore[arg-type]
        sparse=SparseVector(tuple(sparse.indices), tuple(sparse.values))
        if isinstance(sparse, models.SparseVector)
        else None,
    )
