"""Version numbers and the compare-and-set that orders writers (see ``index.writer``)."""

from __future__ import annotations

from sqlalchemy import case, select, update

from index.catalog.base import SqlBase, row_of
from index.catalog.tables import (
    DELETED,
    INDEXED,
    DocumentRow,
    VersionRow,
    now,
)


class VersionLedger(SqlBase):
    """Version numbers: allocation, compare-and-set claim, history."""

    def versions(self, doc_id: str) -> list[VersionRow]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(VersionRow)
                    .where(VersionRow.doc_id == doc_id)
                    .order_by(VersionRow.version)
                )
            )

    def allocate_version(self, doc_id: str, content_hash: str) -> int:
        """The version number for writing ``content_hash``: a number no writer of other content
        gets. Content already claimed, with no newer number handed out since, keeps its number
        (two writers of the same bytes, one finishing while the other starts, write one version,
        not two). A writer that died between taking a number and claiming it left it unclaimed;
        redoing the same content takes the same number again, so the redo writes the same ids."""
        outstanding = DocumentRow.next_version > DocumentRow.version
        claimed_same = (
            ~outstanding & (DocumentRow.version > 0) & (DocumentRow.content_hash == content_hash)
        )
        unclaimed_same = outstanding & (DocumentRow.pending_hash == content_hash)
        highest = case((outstanding, DocumentRow.next_version), else_=DocumentRow.version)
        with self.session() as s:  # one atomic statement: no read-then-write race, in SQLite too
            allocated = s.scalar(
                update(DocumentRow)
                .where(DocumentRow.id == doc_id)
                .values(
                    next_version=case(
                        (claimed_same, DocumentRow.version),
                        (unclaimed_same, DocumentRow.next_version),
                        else_=highest + 1,
                    ),
                    pending_hash=content_hash,
                )
                .returning(DocumentRow.next_version)
            )
        if allocated is None:
            raise KeyError(f"no document {doc_id} in the catalog")
        return int(allocated)

    def claim_version(self, doc_id: str, version: int, content_hash: str) -> bool:
        """Compare-and-set: make ``version`` the indexed one unless a newer one already is, or
        the document was deleted meanwhile (its file is gone: a late write must not bring it
        back).

        Its points must be written already. The document stays ``pending`` until
        ``finish_version``: a crash in between is redone by the next sync.
        """
        with self.session() as s:
            result = s.execute(
                update(DocumentRow)
                .where(
                    DocumentRow.id == doc_id,
                    DocumentRow.version <= version,
                    DocumentRow.status != DELETED,
                )
                .values(version=version, content_hash=content_hash)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def only_version(self, doc_id: str, version: int) -> bool:
        """True when ``version`` is the first and only number ever allocated to the document: no
        other version can have points in the index (a new document has nothing to clean up)."""
        with self.session() as s:
            allocated = s.scalar(select(DocumentRow.next_version).where(DocumentRow.id == doc_id))
            return version == 1 and allocated == 1

    def finish_version(self, doc_id: str, version: int, content_hash: str, size: int, chunk_count: int,
                       filetype: str) -> None:  # fmt: skip
        """The old versions' points are gone: the document is indexed at ``version``."""
        with self.session() as s:
            row = row_of(s, doc_id)
            if row.version != version:  # a newer version was claimed meanwhile: it finishes itself
                return
            row.chunk_count, row.filetype = chunk_count, filetype
            row.status, row.error, row.attempts, row.indexed_at = INDEXED, None, 0, now()
            row.unfinished, row.lease_owner = 0, None
            if s.get(VersionRow, (doc_id, version)) is None:
                s.add(VersionRow(doc_id=doc_id, version=version, content_hash=content_hash, size=size,
                                 chunk_count=chunk_count))  # fmt: skip

    def mark_indexed(
        self,
        doc_id: str,
        version: int,
        content_hash: str,
        size: int,
        chunk_count: int,
        filetype: str,
    ) -> None:
        """claim + finish in one go, for a single writer."""
        if self.claim_version(doc_id, version, content_hash):
            self.finish_version(doc_id, version, content_hash, size, chunk_count, filetype)
