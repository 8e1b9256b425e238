"""Parsed documents waiting for the embed step (distributed mode): catalog rows, referenced by
the embed message, so parsed data never travels through the broker."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from index.catalog.base import SqlBase
from index.catalog.tables import (
    PENDING,
    DocumentRow,
    StagedRow,
    now,
)


class StagingArea(SqlBase):
    """Parse results waiting for the embed step."""

    def stage(self, doc_id: str, token: str, data: bytes) -> None:
        with self.session() as s:
            row = s.get(StagedRow, doc_id)
            if row is None:
                s.add(StagedRow(doc_id=doc_id, token=token, data=data))
            else:
                row.token, row.data, row.created_at = token, data, now()

    def staged(self, doc_id: str, token: str) -> bytes | None:
        with self.session() as s:
            row = s.get(StagedRow, doc_id)
            return row.data if row is not None and row.token == token else None

    def staged_waiting(
        self, limit: int, exclude: str = "", max_unfinished: int | None = None
    ) -> list[tuple[str, str]]:
        """(doc id, token) of parsed documents waiting for the embed step that no worker holds,
        oldest first: an embed task takes some along, for batches across documents. With
        ``max_unfinished``, not those whose workers died under them that often (a suspected
        poison document is left to its own message, never to another's batch)."""
        with self.session() as s:
            rows = s.execute(
                select(StagedRow.doc_id, StagedRow.token)
                .join(DocumentRow, DocumentRow.id == StagedRow.doc_id)
                .where(
                    DocumentRow.status == PENDING,
                    DocumentRow.dispatch_token == StagedRow.token,
                    DocumentRow.lease_owner.is_(None),
                    StagedRow.doc_id != exclude,
                    func.coalesce(DocumentRow.unfinished, 0) < (max_unfinished or 2**31),
                )
                .order_by(StagedRow.created_at)
                .limit(limit)
            )
            return [(doc_id, token) for doc_id, token in rows]

    def unstage(self, doc_id: str) -> None:
        with self.session() as s:
            s.execute(delete(StagedRow).where(StagedRow.doc_id == doc_id))
