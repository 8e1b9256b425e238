"""The lease protocol of the distributed mode, in one place.

A pending document is either waiting in a queue (``lease_owner`` None, ``lease_until`` = when to
stop trusting the queue) or being worked on by one worker process (``lease_owner`` set,
``lease_until`` extended by that worker's heartbeat). Each dispatch writes a fresh token; a
message carries it and a message whose token is no longer the document's is stale and dropped.
``take`` starts work only on a free document (no live lease), so one document has one live
writer; a step that hands the document on (to the embed queue, to a retry) ``release``s it. When
a lease runs out (the worker died, or the queue lost the message) the reconciler finds it in
``expired`` and dispatches it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select, update

from index.catalog.base import SqlBase, after
from index.catalog.tables import (
    INDEXED,
    PENDING,
    DocumentRecord,
    DocumentRow,
    now,
)


class LeaseBook(SqlBase):
    """Dispatch tokens and worker leases (distributed mode)."""

    # -- distributed mode: dispatches, leases, staged parse results ------------------------
    # A pending document is either waiting in a queue (lease_owner None, lease_until = when to
    # stop trusting the queue) or being worked on (lease_owner set, lease_until extended by the
    # worker's heartbeat). When the lease runs out, the reconciler dispatches it again.
    def dispatch(self, doc_id: str, wait_s: float) -> str | None:
        """A fresh token for a pending document about to be queued; None if it is not pending."""
        token = uuid.uuid4().hex
        done = self._lease(
            doc_id, None, dispatch_token=token, lease_owner=None, lease_until=after(wait_s)
        )
        return token if done else None

    def take(self, doc_id: str, token: str, owner: str, lease_s: float) -> DocumentRecord | None:
        """Start work on a dispatched document. None: the message is stale (dispatched again
        since, or the document is no longer pending), or a live lease holds the document (a
        worker, this one included, took it along with another document's batch, or a message
        delivered twice): the message is dropped, the holder finishes the work, and if the
        holder dies its lease runs out and the reconciler dispatches the document again.

        A step that hands the document on (parsed: to the embed queue; a retry) releases its
        lease first, so the next message of the same dispatch finds it free."""
        stmt = _lease_update(doc_id, token).where(
            DocumentRow.lease_owner.is_(None) | (DocumentRow.lease_until < now())
        )
        with self.session() as s:
            result = s.execute(
                stmt.values(
                    lease_owner=owner,
                    lease_until=after(lease_s),
                    unfinished=func.coalesce(DocumentRow.unfinished, 0) + 1,
                    updated_at=DocumentRow.updated_at,
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
            row = s.get(DocumentRow, doc_id, populate_existing=True)
            return DocumentRecord.of(row) if row else None

    def release(self, doc_id: str, token: str, wait_s: float) -> bool:
        """The worker is done with its step (the next one, or a retry, is queued): nobody owns
        the document; if it is still pending in ``wait_s``, it is dispatched again."""
        return self._lease(doc_id, token, lease_owner=None, lease_until=after(wait_s), unfinished=0)

    def heartbeat(self, owner: str, lease_s: float, doc_ids: Collection[str]) -> int:
        """Extend a live worker process's leases on these documents; returns how many it holds."""
        if not doc_ids:
            return 0
        with self.session() as s:
            result = s.execute(
                update(DocumentRow)
                .where(
                    DocumentRow.lease_owner == owner,
                    DocumentRow.status == PENDING,
                    DocumentRow.id.in_(list(doc_ids)),
                )
                .values(lease_until=after(lease_s), updated_at=DocumentRow.updated_at)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def expired(self, limit: int = 1000) -> list[DocumentRecord]:
        """Pending documents nobody is known to be working on or waiting for."""
        with self.session() as s:
            query = (
                select(DocumentRow)
                .where(
                    DocumentRow.status == PENDING,
                    (DocumentRow.lease_until.is_(None)) | (DocumentRow.lease_until < now()),
                )
                .order_by(DocumentRow.updated_at)
                .limit(limit)
            )
            return [DocumentRecord.of(r) for r in s.scalars(query)]

    def captions_due(self, wait_s: float, limit: int = 1000) -> list[DocumentRecord]:
        """Indexed documents whose captions have waited for the VLM longer than ``wait_s``."""
        with self.session() as s:
            query = (
                select(DocumentRow)
                .where(
                    DocumentRow.status == INDEXED,
                    DocumentRow.captions == "pending",
                    DocumentRow.updated_at < after(-wait_s),
                )
                .order_by(DocumentRow.updated_at)
                .limit(limit)
            )
            return [DocumentRecord.of(r) for r in s.scalars(query)]

    def _lease(self, doc_id: str, token: str | None, **values: Any) -> bool:
        with self.session() as s:
            result = s.execute(
                _lease_update(doc_id, token).values(updated_at=DocumentRow.updated_at, **values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]


def _lease_update(doc_id: str, token: str | None) -> Any:
    stmt = update(DocumentRow).where(DocumentRow.id == doc_id, DocumentRow.status == PENDING)
    return stmt.where(DocumentRow.dispatch_token == token) if token is not None else stmt
