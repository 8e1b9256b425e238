"""The versioned write: how one document's new version reaches the index, in one place.

The embedded service and the Celery workers commit through ``VersionedWriter.commit``:

1. the caller's ``still_current`` check: a file that moved on since it was read is not written
   (its newer change is on its way);
2. ``allocate_version``: a number no writer of other content gets (the same content keeps the
   claimed number, so a redo or a second writer of the same bytes writes the same point ids);
3. upsert every chunk of the new version: readers still see the old one, and now both;
4. ``claim_version``, a compare-and-set on the catalog: a newer version already claimed wins, and
   this version's points are removed again;
5. remove the older versions (never a newer one: its writer is between its upsert and its claim),
   and chunks past the end when the same version was written again shorter;
6. ``finish_version``: the document is indexed at this version, with its history row.

A crash anywhere leaves the document pending in the catalog; redoing it writes the same ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from index.catalog import Catalog
from index.schema import build_metadata
from index.vectors import IndexPoint, VectorIndex, make_point
from ingest.models import EmbeddedChunk


@dataclass(frozen=True)
class DocumentVersion:
    """What one commit writes: where the document is, who may read it, the content it holds."""

    doc_id: str
    share: str
    path: str
    acl: list[str]
    acl_deny: list[str]
    content_hash: str
    size: int
    mtime_ns: int
    filetype: str
    chunks: Sequence[EmbeddedChunk]


class VersionedWriter:
    def __init__(self, catalog: Catalog, store: VectorIndex, embedding_model: str) -> None:
        self.catalog = catalog
        self.store = store
        self.embedding_model = embedding_model

    def commit(self, doc: DocumentVersion, still_current: Callable[[], bool]) -> bool:
        """Write ``doc`` as the document's newest version; False when it was stale (the file
        changed since it was read, or a newer version was claimed first) and nothing of it
        stays in the index."""
        if not still_current():
            return False
        catalog, store = self.catalog, self.store
        version = catalog.allocate_version(doc.doc_id, doc.content_hash)
        record = catalog.get(doc.doc_id)
        same = record is not None and record.version == version
        store.upsert([self._point(doc, version, c) for c in doc.chunks])
        if not catalog.claim_version(doc.doc_id, version, doc.content_hash):
            store.delete_version(doc.doc_id, version)
            return False
        if not catalog.only_version(doc.doc_id, version):  # a new document skips the scan
            store.delete_versions_before(doc.doc_id, version)
        if same and record and record.chunk_count > len(doc.chunks):  # written again, shorter
            store.delete_chunks(doc.doc_id, version, range(len(doc.chunks), record.chunk_count))
        catalog.finish_version(
            doc.doc_id, version, doc.content_hash, doc.size, len(doc.chunks), doc.filetype
        )
        return True

    def _point(self, doc: DocumentVersion, version: int, c: EmbeddedChunk) -> IndexPoint:
        chunk = c.chunk
        metadata = build_metadata(
            doc_id=doc.doc_id, share=doc.share, path=doc.path, version=version,
            content_hash=doc.content_hash, chunk_index=chunk.index, chunk_count=len(doc.chunks),
            kind=chunk.kind, kinds=list(chunk.kinds), page_numbers=list(chunk.page_numbers),
            section=chunk.section, mtime_ns=doc.mtime_ns, filetype=doc.filetype,
            embedding_model=self.embedding_model, text_hash=c.text_hash,
            acl=doc.acl, acl_deny=doc.acl_deny,
        )  # fmt: skip
        return make_point(doc.doc_id, version, chunk.index, chunk.text, c.dense, c.sparse, metadata)
