"""The vector index as the rest of the system sees it: a Protocol over documents' chunks.

Every implementation keeps the same point contract (``index.schema``: deterministic ids, named
vectors ``dense`` and ``sparse``, payload ``page_content`` + ``metadata``) and answers queries
only with what the principal may read. ``index.qdrant.QdrantIndex`` is the implementation on
qdrant-client (a Qdrant server, or local mode in the data dir); ``tests/index/test_vectors.py``
is the one contract suite every implementation (and the tests' in-memory fake) passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from index.permissions.readers import Principal
from index.schema import CONTENT_KEY, METADATA_KEY, point_id
from ingest.models import SparseVector
from ingest.pipeline import StoredVectors

SearchMode = Literal["hybrid", "dense", "sparse"]


class StoreError(Exception):
    """Base of the errors of the vector store."""


class IndexLocked(StoreError):
    """An embedded index held by another process (one process per index folder)."""


class IndexDamaged(StoreError):
    """The embedded index's files cannot be read (``shareindex rebuild``)."""


class ModelMismatch(StoreError):
    """The collection was built with another embedding model, dimension or sparse tokenizer."""


class IndexUnavailable(StoreError):
    """The index server cannot be reached (transient)."""


@dataclass(frozen=True)
class IndexPoint:
    """One chunk as it is written: its id, text, vectors and metadata."""

    id: str
    text: str
    dense: Sequence[float]
    sparse: SparseVector
    metadata: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        return {CONTENT_KEY: self.text, METADATA_KEY: self.metadata}


@dataclass(frozen=True)
class StoredPoint:
    """One point as it is read back; vectors only when asked for."""

    id: str
    payload: dict[str, Any]
    dense: tuple[float, ...] | None = None
    sparse: SparseVector | None = field(default=None)

    @property
    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = self.payload.get(METADATA_KEY, {})
        return meta


@dataclass(frozen=True)
class Hit:
    page_content: str
    score: float
    metadata: dict[str, Any]
    #: neighbouring chunks and section title, when asked for
    context: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"page_content": self.page_content, "score": self.score, "metadata": self.metadata}
        if self.context is not None:
            out["context"] = self.context
        return out


class VectorIndex(Protocol):
    """The chunks of every document, versioned; thread-safe."""

    def ensure_collection(
        self, model: str, dimension: int, sparse_tokenizer: str = "bigram"
    ) -> None:
        """Create the collection (with payload indexes on the filter fields), or check that it
        was built with this model, dimension and sparse tokenizer (ModelMismatch if not)."""

    def close(self) -> None: ...

    # -- writes ----------------------------------------------------------------------------
    def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Write points; the same id twice is one point."""

    def delete_version(self, doc_id: str, version: int) -> None: ...

    def delete_versions_before(self, doc_id: str, version: int) -> None:
        """Remove ``doc_id``'s versions older than ``version``; newer ones are never touched."""

    def delete_chunks(self, doc_id: str, version: int, indexes: Sequence[int]) -> None: ...

    def delete_document(self, doc_id: str) -> None: ...

    def set_acl(self, doc_id: str, acl: list[str], acl_deny: list[str]) -> None:
        """A permission change: every point of the document, in place."""

    def set_share_readers(self, share: str, allow: list[str], deny: list[str]) -> None:
        """A change of a share's own permissions: every point of the share, in place."""

    def set_location(self, doc_id: str, path: str, mtime_ns: int) -> None:
        """A moved or renamed file: every point re-pointed, vectors untouched."""

    def set_version_metadata(self, doc_id: str, version: int, fields: dict[str, Any]) -> None:
        """Metadata fields of every point of one version, in place (a version written in slices
        made whole: its ACL, its chunk count, no longer partial)."""

    # -- reads -----------------------------------------------------------------------------
    def stored_vectors(
        self, doc_id: str, version: int, indexes: Sequence[int] | None = None
    ) -> dict[str, StoredVectors]:
        """Vectors of a stored version keyed by chunk text hash (reuse by the next version); of
        the chunks at ``indexes`` only, when given (a large document, slice by slice)."""

    def stored_hashes(self, doc_id: str, version: int) -> dict[str, int]:
        """Text hash -> chunk index of a stored version, without vectors (what a large
        document's next version looks up before it fetches the vectors it can reuse)."""

    def document_points(self, doc_id: str) -> list[StoredPoint]: ...

    def points(self, with_vectors: bool = False) -> Iterator[StoredPoint]:
        """Every point, read in pages (never all at once)."""

    def count(self) -> int: ...

    def search(
        self,
        principal: Principal,
        dense: Sequence[float],
        sparse: SparseVector,
        k: int = 10,
        mode: SearchMode = "hybrid",
        shares: Sequence[str] = (),
    ) -> list[Hit]:
        """Top-k chunks ``principal`` may read (the ACL filter inside every prefetch);
        ``shares``: of these shares only."""

    def document_chunks(
        self,
        doc_id: str,
        principal: Principal,
        indexes: list[int] | None = None,
        version: int | None = None,
    ) -> list[Hit]:
        """Chunks of a document ``principal`` may read, in order: of ``version``, or of the
        newest version present (two exist while a new one replaces the old)."""


def make_point(
    doc_id: str,
    version: int,
    chunk_index: int,
    text: str,
    dense: Sequence[float],
    sparse: SparseVector,
    metadata: dict[str, Any],
) -> IndexPoint:
    return IndexPoint(point_id(doc_id, version, chunk_index), text, dense, sparse, metadata)
