"""``VectorIndex`` on Qdrant Edge: the Qdrant engine in this process (the embedded default).

The same segments, HNSW, payload indexes, sparse vectors with the IDF modifier, prefetch + RRF
fusion and filters as a Qdrant server, in one shard folder of the data dir, with a write-ahead
log (a kill -9 loses nothing that was written). One process per shard (a second gets
``IndexLocked``). The ACL filter is built from its one definition
(``index.permissions.readers.acl_clauses``), as the server's is.

New points are searchable at once (Edge searches segments without an HNSW index by brute force);
the HNSW index is built by ``optimize``, which the ``Optimizer`` runs in the background when
enough points wait for it and writes have paused: queries and writes go on meanwhile.

The collection's metadata (embedding model, dimension, sparse tokenizer) is kept beside the shard
in ``collection.json``; Edge itself knows only the vector sizes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import qdrant_edge as qe

from index.edge_parts import Optimizer, acl_edge_filter, all_of, match
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
    IndexDamaged,
    IndexLocked,
    IndexPoint,
    ModelMismatch,
    SearchMode,
    StoredPoint,
    StoreError,
)
from ingest.models import SparseVector
from ingest.pipeline import StoredVectors

log = logging.getLogger(__name__)

SHARD = "shard"
META = "collection.json"
_WRITE_BATCH = 512
_PAGE = 512
#: the RRF constant of qdrant-client and the Qdrant server (the same ranks fuse the same)
_RRF_K = 2
_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}


class EdgeIndex:
    """One Edge shard in ``folder`` (``<folder>/shard``, ``<folder>/collection.json``)."""

    def __init__(
        self, folder: str | Path, optimize_after: int = 20_000, idle_s: float = 5.0
    ) -> None:
        self.folder = Path(folder)
        self._shard: Any = None
        self._write = threading.RLock()
        if (self.folder / SHARD).exists():
            self._shard = _load(self.folder / SHARD)
        self.optimizer = Optimizer(self, optimize_after, idle_s)

    @property
    def shard(self) -> Any:
        if self._shard is None:
            raise StoreError(f"no collection in {self.folder}: ensure_collection first")
        return self._shard

    # -- collection ------------------------------------------------------------------------
    def ensure_collection(
        self, model: str, dimension: int, sparse_tokenizer: str = "bigram"
    ) -> None:
        wanted = {"embedding_model": model, "dimension": dimension,
                  "sparse_tokenizer": sparse_tokenizer}  # fmt: skip
        meta_path = self.folder / META
        with self._write:
            if self._shard is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                # the metadata first (atomically): a crash after it leaves a shard to create
                tmp = meta_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(wanted, indent=2))
                tmp.replace(meta_path)
                self._shard = qe.EdgeShard.create(str(self.folder / SHARD), shard_config(dimension))
            self._ensure_payload_indexes()
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if meta.get("embedding_model") != model or meta.get("dimension") != dimension:
            raise ModelMismatch(
                f"the index in {self.folder} was built with embedding model "
                f"{meta.get('embedding_model')!r} ({meta.get('dimension')} dims), not {model!r} "
                f"({dimension} dims); use that model, or a new data dir"
            )
        built = meta.get("sparse_tokenizer", "bigram")
        if built != sparse_tokenizer:
            raise ModelMismatch(
                f"the index in {self.folder} was built with sparse tokenizer {built!r}, not "
                f"{sparse_tokenizer!r}; use that tokenizer, or a new data dir"
            )

    def _ensure_payload_indexes(self) -> None:
        """Every filter field indexed (created now if a crash or an older shard left one out)."""
        have = set(self.shard.info().payload_schema)
        missing = {f: k for f, k in INDEXED_FIELDS.items() if f not in have}
        for field, kind in missing.items():
            self.shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA[kind]))
        if missing:
            self.shard.flush()

    def close(self) -> None:
        self.optimizer.stop()
        with self._write:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None

    def flush(self) -> None:
        with self._write:
            self.shard.flush()

    # -- writes ----------------------------------------------------------------------------
    def _update(self, operation: Any) -> None:
        with self._write:
            self.shard.update(operation)
        self.optimizer.wrote()

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        for start in range(0, len(points), _WRITE_BATCH):
            batch = [_point(p) for p in points[start : start + _WRITE_BATCH]]
            self._update(qe.UpdateOperation.upsert_points(batch))
        self.optimizer.added(len(points))

    def delete_version(self, doc_id: str, version: int) -> None:
        self._delete(all_of(match("metadata.doc_id", doc_id), match("metadata.version", version)))

    def delete_versions_before(self, doc_id: str, version: int) -> None:
        older = qe.FieldCondition("metadata.version", range=qe.RangeFloat(lt=version))
        self._delete(all_of(match("metadata.doc_id", doc_id), older))

    def delete_chunks(self, doc_id: str, version: int, indexes: Sequence[int]) -> None:
        if indexes:
            ids: list[int | UUID | str] = [point_id(doc_id, version, i) for i in indexes]
            self._update(qe.UpdateOperation.delete_points(ids))

    def delete_document(self, doc_id: str) -> None:
        self._delete(all_of(match("metadata.doc_id", doc_id)))

    def _delete(self, flt: Any) -> None:
        self._update(qe.UpdateOperation.delete_points_by_filter(flt))

    def set_acl(self, doc_id: str, acl: list[str], acl_deny: list[str]) -> None:
        self._set_metadata(doc_id, {"acl": acl, "acl_deny": acl_deny})

    def set_share_readers(self, share: str, allow: list[str], deny: list[str]) -> None:
        fields = {"share_acl": allow, "share_acl_deny": deny}
        flt = all_of(match("metadata.share", share))
        self._update(qe.UpdateOperation.set_payload_by_filter(flt, fields, key=METADATA_KEY))

    def set_location(self, doc_id: str, path: str, mtime_ns: int) -> None:
        self._set_metadata(doc_id, location_metadata(path, mtime_ns))

    def set_version_metadata(self, doc_id: str, version: int, fields: dict[str, Any]) -> None:
        flt = all_of(match("metadata.doc_id", doc_id), match("metadata.version", version))
        self._update(qe.UpdateOperation.set_payload_by_filter(flt, fields, key=METADATA_KEY))

    def _set_metadata(self, doc_id: str, fields: dict[str, Any]) -> None:
        flt = all_of(match("metadata.doc_id", doc_id))
        self._update(qe.UpdateOperation.set_payload_by_filter(flt, fields, key=METADATA_KEY))

    # -- reads -----------------------------------------------------------------------------
    def stored_vectors(
        self, doc_id: str, version: int, indexes: Sequence[int] | None = None
    ) -> dict[str, StoredVectors]:
        conditions = [match("metadata.doc_id", doc_id), match("metadata.version", version)]
        if indexes is not None:
            if not indexes:
                return {}
            conditions.append(
                qe.FieldCondition("metadata.chunk_index", match=qe.MatchAny(list(indexes)))
            )
        out: dict[str, StoredVectors] = {}
        for point in self._pages(qe.Filter(must=conditions), with_vectors=True):
            if point.dense is not None and point.sparse is not None:
                out[point.metadata["text_hash"]] = StoredVectors(point.dense, point.sparse)
        return out

    def stored_hashes(self, doc_id: str, version: int) -> dict[str, int]:
        flt = all_of(match("metadata.doc_id", doc_id), match("metadata.version", version))
        return {
            p.metadata["text_hash"]: int(p.metadata["chunk_index"])
            for p in self._pages(flt, with_vectors=False)
        }

    def _pages(self, flt: Any, with_vectors: bool) -> Iterator[StoredPoint]:
        offset = None
        while True:
            with _reading(self.folder):
                records, offset = self.shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=_PAGE,
                        filter=flt,
                        with_payload=True,
                        with_vector=with_vectors,
                    )  # fmt: skip
                )
            yield from (stored_point(r) for r in records)
            if offset is None:
                return

    def points(self, with_vectors: bool = False) -> Iterator[StoredPoint]:
        return self._pages(None, with_vectors)

    def document_points(self, doc_id: str) -> list[StoredPoint]:
        return list(self._pages(all_of(match("metadata.doc_id", doc_id)), False))

    def count(self) -> int:
        return int(self.shard.count(qe.CountRequest(exact=True)))

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
        flt = acl_edge_filter(principal, shares)
        dense_q = qe.Query.Nearest(list(dense), using=DENSE)
        sparse_q = qe.Query.Nearest(qe.SparseVector(list(sparse.indices), list(sparse.values)),
                                    using=SPARSE)  # fmt: skip
        if mode == "dense" or (mode == "hybrid" and not sparse.indices):
            request = qe.QueryRequest(limit=k, query=dense_q, filter=flt, with_payload=True)
        elif mode == "sparse":
            request = qe.QueryRequest(limit=k, query=sparse_q, filter=flt, with_payload=True)
        else:
            request = qe.QueryRequest(
                limit=k,
                prefetches=[qe.Prefetch(k * 4, query=dense_q, filter=flt),
                            qe.Prefetch(k * 4, query=sparse_q, filter=flt)],
                # no outer filter: the fused points come only from the filtered prefetches
                query=qe.Fusion.Rrf(k=_RRF_K),  # type: ignore[arg-type]
                with_payload=True,
            )  # fmt: skip
        with _reading(self.folder):
            found = self.shard.query(request)
        return [
            Hit((p.payload or {}).get(CONTENT_KEY, ""), float(p.score),
                (p.payload or {}).get(METADATA_KEY, {}))
            for p in found
        ]  # fmt: skip

    def document_chunks(
        self,
        doc_id: str,
        principal: Principal,
        indexes: list[int] | None = None,
        version: int | None = None,
    ) -> list[Hit]:
        conditions = [acl_edge_filter(principal), match("metadata.doc_id", doc_id)]
        if indexes is not None:
            conditions.append(qe.FieldCondition("metadata.chunk_index", match=qe.MatchAny(indexes)))
        if version is not None:
            conditions.append(match("metadata.version", version))
        records = list(self._pages(qe.Filter(must=conditions), False))
        if not records:
            return []
        newest = max(r.metadata["version"] for r in records)
        chunks = sorted((r for r in records if r.metadata["version"] == newest),
                        key=lambda r: r.metadata["chunk_index"])  # fmt: skip
        return [Hit(r.payload.get(CONTENT_KEY, ""), 1.0, r.metadata) for r in chunks]

    # -- maintenance -----------------------------------------------------------------------
    def unindexed(self) -> int:
        """Points written since the index was last optimized."""
        return self.optimizer.pending

    def optimize(self) -> bool:
        """Build the HNSW indexes and merge segments (blocks the caller, not the others)."""
        started = time.monotonic()
        done = bool(self.shard.optimize())
        log.info("index optimized in %.1f s", time.monotonic() - started)
        return done


def shard_config(dimension: int) -> Any:
    """The shard's configuration: a dense vector of ``dimension`` (cosine), a sparse one (IDF)."""
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )


def _load(path: Path) -> Any:
    try:
        return qe.EdgeShard.load(str(path))
    except Exception as exc:
        if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
            raise IndexLocked(
                f"the index in {path.parent} is held by another ShareIndex process (one process "
                "per embedded index); stop it, or query through its API"
            ) from exc
        raise IndexDamaged(
            f"cannot open the index in {path.parent} ({exc}): run 'shareindex rebuild' (it moves "
            "it aside, salvages the points that can still be read, and indexes the rest again)"
        ) from exc


def _point(p: IndexPoint) -> Any:
    vector: dict[str, Any] = {
        DENSE: list(p.dense),
        SPARSE: qe.SparseVector(list(p.sparse.indices), list(p.sparse.values)),
    }
    return qe.Point(p.id, vector, p.payload)


#: what Edge says when a file of the shard is shorter or other than its bookkeeping says
_DAMAGE = re.compile(
    r"out of bounds|io error|gridstore|corrupt|unexpected end|not readable", re.IGNORECASE
)


@contextlib.contextmanager
def _reading(folder: Path) -> Iterator[None]:
    """A read that fails because a file of the shard is damaged (truncated, overwritten: the
    shard opened, but its storage does not hold what its bookkeeping says) is IndexDamaged,
    with the remedy, not a traceback."""
    try:
        yield
    except Exception as exc:
        if not (_DAMAGE.search(str(exc)) or str(folder) in str(exc)):  # a file of the shard
            raise
        raise IndexDamaged(
            f"the index in {folder} is damaged ({exc}): run 'shareindex rebuild' (it salvages "
            "the points that can still be read and indexes the rest of the shares again)"
        ) from exc


def stored_point(record: Any) -> StoredPoint:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    dense, sparse = vectors.get(DENSE), vectors.get(SPARSE)
    return StoredPoint(
        id=str(record.id),
        payload=record.payload or {},
        dense=tuple(float(x) for x in dense) if isinstance(dense, list) else None,
        sparse=SparseVector(tuple(sparse.indices), tuple(sparse.values))
        if sparse is not None and hasattr(sparse, "indices")
        else None,
    )
