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

A large document is written in slices (``VersionedWriter.begin`` -> ``SlicedVersion``): its
points go in as its slices are embedded, so neither its chunks nor its vectors are ever all in
memory. The swap stays atomic for readers who could read it before:

- a document with an indexed version (an edit): the new slices are written readable by nobody
  (an empty ACL: no principal's filter matches) and readers keep the old version until the new
  one is complete; then one payload update gives the new version its ACL, and the old is removed;
- a new document (nothing to keep): its slices are searchable as they land, marked
  ``metadata.partial = true`` until the last one is in.

The same compare-and-set decides at the end; a lost race, a file that changed meanwhile or an
error removes the slices written (``SlicedVersion.abandon``).

Every point also carries its share's layer of readers, as the catalog records it for the share
(never recorded: nobody). A pass that records a new share layer updates the share's points after
recording it; a writer that wrote the old one looks again after its write, so neither loses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

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
        share = self.share_readers(doc.share)
        store.upsert([self._point(doc, version, c, share) for c in doc.chunks])
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
        # a permission change planned while this version was written is not lost: the points
        # get the readers the catalog holds now
        now = catalog.get(doc.doc_id)
        if now is not None and now.version == version:
            acl = (sorted(now.acl), sorted(now.acl_deny))
            if acl != (sorted(doc.acl), sorted(doc.acl_deny)):
                store.set_acl(doc.doc_id, *acl)
            self._share_changed(doc, version, share)
        return True

    def share_readers(self, share: str) -> tuple[list[str], list[str]]:
        """The share layer the catalog holds for ``share``; never recorded: nobody."""
        readers = self.catalog.share_readers(share)
        return (readers.allow, readers.deny) if readers is not None else ([], [])

    def _share_changed(
        self, doc: DocumentVersion, version: int, written: tuple[list[str], list[str]]
    ) -> None:
        """The share's readers changed while this version was written: its points get the new."""
        now = self.share_readers(doc.share)
        if now != written:
            fields = {"share_acl": now[0], "share_acl_deny": now[1]}
            self.store.set_version_metadata(doc.doc_id, version, fields)

    def begin(self, doc: DocumentVersion) -> SlicedVersion:
        """A new version of ``doc`` (its ``chunks`` unused) to be written slice by slice."""
        version = self.catalog.allocate_version(doc.doc_id, doc.content_hash)
        record = self.catalog.get(doc.doc_id)
        visible = record is None or record.version == 0 or record.version == version
        return SlicedVersion(self, doc, version, visible)

    def _point(
        self, doc: DocumentVersion, version: int, c: EmbeddedChunk,
        share: tuple[list[str], list[str]], chunk_count: int | None = None,
    ) -> IndexPoint:  # fmt: skip
        chunk = c.chunk
        count = len(doc.chunks) if chunk_count is None else chunk_count
        metadata = build_metadata(
            doc_id=doc.doc_id, share=doc.share, path=doc.path, version=version,
            content_hash=doc.content_hash, chunk_index=chunk.index, chunk_count=count,
            kind=chunk.kind, kinds=list(chunk.kinds), page_numbers=list(chunk.page_numbers),
            section=chunk.section, mtime_ns=doc.mtime_ns, filetype=doc.filetype,
            embedding_model=self.embedding_model, text_hash=c.text_hash,
            acl=doc.acl, acl_deny=doc.acl_deny, share_acl=share[0], share_acl_deny=share[1],
        )  # fmt: skip
        return make_point(doc.doc_id, version, chunk.index, chunk.text, c.dense, c.sparse, metadata)


class SlicedVersion:
    """One version of a large document being written slice by slice (see the module doc)."""

    def __init__(
        self, writer: VersionedWriter, doc: DocumentVersion, version: int, visible: bool
    ) -> None:
        self.writer = writer
        self.doc = doc
        self.version = version
        #: True: a new document, searchable (marked partial) as its slices land; False: an
        #: edit, hidden until complete (readers keep the old version)
        self.visible = visible
        self.written = 0

    def add(self, chunks: Sequence[EmbeddedChunk], last: bool) -> None:
        """Upsert the next slice (chunk indexes continue the previous slice's)."""
        if not chunks:
            return
        end = chunks[-1].chunk.index + 1
        count = end if last else end + 1  # a chunk before the last has a next one
        # an edit's new version: readable by nobody until it is complete
        doc = self.doc if self.visible else replace(self.doc, acl=[], acl_deny=[])
        share = self.writer.share_readers(doc.share)
        points = [self.writer._point(doc, self.version, c, share, count) for c in chunks]
        for p in points:
            p.metadata["partial"] = True
        self.writer.store.upsert(points)
        self.written = end

    def finish(
        self, content_hash: str, acl: tuple[list[str], list[str]], still_current: Callable[[], bool]
    ) -> bool:
        """Make the version whole and the indexed one; False (and its slices removed) when the
        file changed since it was read or a newer version was claimed first. ``acl``: who may
        read the document now (a permission change during the write is not lost)."""
        w, doc, version = self.writer, self.doc, self.version
        if not still_current() or not w.catalog.claim_version(doc.doc_id, version, content_hash):
            self.abandon()
            return False
        allow, deny = acl
        share_allow, share_deny = w.share_readers(doc.share)
        fields: dict[str, Any] = {
            "acl": allow, "acl_deny": deny, "share_acl": share_allow,
            "share_acl_deny": share_deny, "chunk_count": self.written, "partial": False,
        }  # fmt: skip
        w.store.set_version_metadata(doc.doc_id, version, fields)
        w._share_changed(doc, version, (share_allow, share_deny))  # a pass recorded another
        w.store.delete_versions_before(doc.doc_id, version)
        record = w.catalog.get(doc.doc_id)
        if record is not None and record.chunk_count > self.written and record.version == version:
            w.store.delete_chunks(doc.doc_id, version, range(self.written, record.chunk_count))
        w.catalog.finish_version(
            doc.doc_id, version, content_hash, doc.size, self.written, doc.filetype
        )
        return True

    def abandon(self) -> None:
        """Remove what was written of this version (never the version readers see)."""
        record = self.writer.catalog.get(self.doc.doc_id)
        if record is None or record.version != self.version:
            self.writer.store.delete_version(self.doc.doc_id, self.version)
