"""The documents of the catalog: one row per file ever seen, its status, path, ACL and
what the index holds of it (version, content hash, chunk count)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select, update

from index.catalog.base import SqlBase, aware, row_of
from index.catalog.tables import (
    DELETED,
    FAILED,
    INDEXED,
    PENDING,
    STATUSES,
    DocumentRecord,
    DocumentRow,
    now,
)
from index.schema import document_id


class DocumentTable(SqlBase):
    """Documents: where each file is, its status and readers."""

    # -- reads -----------------------------------------------------------------------------
    def documents(self, share: str) -> dict[str, DocumentRecord]:
        """Every document of a share by path, in one query."""
        with self.session() as s:
            rows = s.scalars(select(DocumentRow).where(DocumentRow.share == share))
            return {row.path: DocumentRecord.of(row) for row in rows}

    def get(self, doc_id: str) -> DocumentRecord | None:
        with self.session() as s:
            row = s.get(DocumentRow, doc_id)
            return DocumentRecord.of(row) if row else None

    def new_id(self, share: str, path: str) -> str:
        """The id of a new document at ``path``: derived from where it is first seen, unless a
        document first seen there has it (a file renamed away, then a new file under its old
        name): then the next of a sequence derived the same way, so that two planners of the
        same share agree."""
        with self.session() as s:
            for n in range(1_000_000):
                candidate = document_id(share, path if n == 0 else f"{path}\x00{n}")
                held = s.execute(
                    select(DocumentRow.share, DocumentRow.path).where(DocumentRow.id == candidate)
                ).first()
                if held is None or tuple(held) == (share, path):
                    return candidate
        raise AssertionError("unreachable: a million documents renamed away from one path")

    def find(self, share: str, path: str) -> DocumentRecord | None:
        with self.session() as s:
            row = s.scalars(
                select(DocumentRow).where(DocumentRow.share == share, DocumentRow.path == path)
            ).first()
            return DocumentRecord.of(row) if row else None

    def find_many(self, share: str, paths: Iterable[str]) -> dict[str, DocumentRecord]:
        """The documents at these paths, a few queries for any number of paths."""
        wanted = list(dict.fromkeys(paths))
        found: dict[str, DocumentRecord] = {}
        with self.session() as s:
            for start in range(0, len(wanted), 500):
                rows = s.scalars(
                    select(DocumentRow).where(
                        DocumentRow.share == share,
                        DocumentRow.path.in_(wanted[start : start + 500]),
                    )
                )
                found.update((row.path, DocumentRecord.of(row)) for row in rows)
        return found

    def members(self, parent_id: str) -> list[DocumentRecord]:
        """The documents inside a file (attachments, archive members), deleted ones included."""
        with self.session() as s:
            rows = s.scalars(
                select(DocumentRow)
                .where(DocumentRow.parent_id == parent_id)
                .order_by(DocumentRow.path)
            )
            return [DocumentRecord.of(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(DocumentRow.status, func.count()).group_by(DocumentRow.status))
            found = {status: n for status, n in rows}
        return {status: found.get(status, 0) for status in STATUSES}

    def format_counts(self) -> dict[str, dict[str, int]]:
        """Documents (not deleted) by format and status: {"pdf": {"indexed": 120, ...}}."""
        with self.session() as s:
            rows = s.execute(
                select(DocumentRow.filetype, DocumentRow.status, func.count())
                .where(DocumentRow.status != DELETED)
                .group_by(DocumentRow.filetype, DocumentRow.status)
            )
            counts: dict[str, dict[str, int]] = {}
            for filetype, status, n in rows:
                counts.setdefault(filetype or "unknown", {})[status] = int(n)
        return dict(sorted(counts.items(), key=lambda kv: -sum(kv[1].values())))

    def reason_counts(self, status: str) -> dict[str, int]:
        """The reasons of the documents with this status, most common first."""
        with self.session() as s:
            rows = s.execute(
                select(DocumentRow.error, func.count())
                .where(DocumentRow.status == status)
                .group_by(DocumentRow.error)
                .order_by(func.count().desc())
            )
            return {str(error or ""): int(n) for error, n in rows}

    def with_status(self, status: str, limit: int | None = None) -> list[DocumentRecord]:
        with self.session() as s:
            query = (
                select(DocumentRow)
                .where(DocumentRow.status == status)
                .order_by(DocumentRow.share, DocumentRow.path)
            )
            return [DocumentRecord.of(r) for r in s.scalars(query.limit(limit))]

    # -- writes ----------------------------------------------------------------------------
    def upsert_seen(
        self, doc_id: str, share: str, path: str, size: int, mtime_ns: int, acl: list[str],
        acl_deny: list[str] | None = None, acl_note: str | None = None,
        parent_id: str | None = None, filetype: str | None = None,
    ) -> None:  # fmt: skip
        """Record that a file (or a member of one: ``parent_id``) exists and still has to be
        processed (status pending); ``filetype``: what it is counted as until it is parsed."""
        with self.session() as s:
            row = s.get(DocumentRow, doc_id)
            if row is None:
                row = DocumentRow(id=doc_id, share=share, path=path, version=0, attempts=0)
                s.add(row)
            row.parent_id = parent_id
            if filetype is not None:
                row.filetype = filetype
            row.share, row.path, row.size, row.mtime_ns = share, path, size, mtime_ns
            row.acl, row.acl_deny, row.acl_note = (
                json.dumps(acl),
                json.dumps(acl_deny or []),
                acl_note,
            )
            row.status, row.error = PENDING, None

    def mark_unchanged(self, doc_id: str, size: int, mtime_ns: int) -> None:
        """Content hash equal to what is indexed: remember the new stat, keep the version."""
        with self.session() as s:
            row = row_of(s, doc_id)
            row.size, row.mtime_ns, row.status, row.error = size, mtime_ns, INDEXED, None

    def repoint(
        self, doc_id: str, path: str, size: int, mtime_ns: int, acl: list[str], acl_deny: list[str]
    ) -> None:
        """A moved or renamed file: same document, same version, new path."""
        with self.session() as s:
            row = row_of(s, doc_id)
            stale = s.scalars(
                select(DocumentRow).where(DocumentRow.share == row.share, DocumentRow.path == path)
            ).first()
            if stale is not None and stale.id != doc_id:
                if stale.status != DELETED:
                    raise ValueError(
                        f"{row.share}:{path} is a live document; cannot move {doc_id} there"
                    )
                s.delete(stale)  # a tombstone at the new path gives way
                s.flush()
            row.path, row.size, row.mtime_ns = path, size, mtime_ns
            row.acl, row.acl_deny = json.dumps(acl), json.dumps(acl_deny)

    def pending_since(self) -> dict[str, datetime]:
        """Per share, since when its oldest pending document has waited."""
        with self.session() as s:
            rows = s.execute(
                select(DocumentRow.share, func.min(DocumentRow.updated_at))
                .where(DocumentRow.status == PENDING)
                .group_by(DocumentRow.share)
            )
            return {share: aware(at) for share, at in rows}

    def mark_failed(self, doc_id: str, status: str, reason: str) -> None:
        """A permanent error (``failed``), nothing to index (``skipped``) or a transient error
        (``pending``), with its reason. The indexed version, if any, stays as it was. A document
        deleted meanwhile stays deleted (its file is gone: the error of a late reader must not
        bring it back as pending)."""
        with self.session() as s:
            row_of(s, doc_id)  # KeyError for an unknown document
            s.execute(
                update(DocumentRow)
                .where(DocumentRow.id == doc_id, DocumentRow.status != DELETED)
                .values(
                    status=status,
                    error=reason,
                    attempts=DocumentRow.attempts + 1,
                    unfinished=0,
                    lease_owner=None,
                )  # fmt: skip
            )

    def mark_deleted(self, doc_ids: Iterable[str], kept_until: datetime | None = None) -> None:
        """Tombstones: the file is gone; its row stays, with its history. ``kept_until``: its
        points stay (readable by nobody) until then, for ``kept_twin``."""
        with self.session() as s:
            for doc_id in doc_ids:
                row = row_of(s, doc_id)
                row.status, row.error, row.chunk_count = DELETED, None, 0
                row.kept_until = kept_until if row.version else None

    def restore_indexed(
        self, doc_id: str, share: str, path: str, version: int, content_hash: str,
        chunk_count: int, acl: list[str], acl_deny: list[str], filetype: str | None,
        parent_id: str | None,
    ) -> None:  # fmt: skip
        """A row rebuilt from what the index holds (``shareindex rebuild`` of a lost catalog):
        indexed at that version; size and mtime unknown (0), so the next pass hashes the file
        and finds it unchanged, or processes it."""
        with self.session() as s:
            row = s.get(DocumentRow, doc_id)
            if row is None:
                row = DocumentRow(id=doc_id, share=share, path=path, attempts=0)
                s.add(row)
            row.size, row.mtime_ns, row.version, row.next_version = 0, 0, version, version
            row.content_hash, row.pending_hash, row.chunk_count = (
                content_hash,
                content_hash,
                chunk_count,
            )
            row.acl, row.acl_deny, row.filetype, row.parent_id = (
                json.dumps(acl),
                json.dumps(acl_deny),
                filetype,
                parent_id,
            )
            row.status, row.error, row.indexed_at = INDEXED, None, now()

    def kept_twin(self, content_hash: str) -> DocumentRecord | None:
        """A deleted document of this content whose points are still kept (the newest)."""
        with self.session() as s:
            row = s.scalars(
                select(DocumentRow)
                .where(DocumentRow.content_hash == content_hash, DocumentRow.status == DELETED,
                       DocumentRow.kept_until > now(), DocumentRow.version > 0)
                .order_by(DocumentRow.updated_at.desc())
                .limit(1)
            ).first()  # fmt: skip
            return DocumentRecord.of(row) if row is not None else None

    def expired_kept(self, limit: int = 1000) -> list[str]:
        """Deleted documents whose points were kept past their time: to be removed."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(DocumentRow.id)
                    .where(DocumentRow.status == DELETED, DocumentRow.kept_until <= now())
                    .limit(limit)
                )
            )

    def forget_kept(self, doc_ids: Iterable[str]) -> None:
        with self.session() as s:
            for doc_id in doc_ids:
                row_of(s, doc_id).kept_until = None

    def set_acl(
        self,
        doc_id: str,
        acl: list[str],
        acl_deny: list[str] | None = None,
        acl_note: str | None = None,
    ) -> None:
        with self.session() as s:
            row = row_of(s, doc_id)
            row.acl, row.acl_deny, row.acl_note = (
                json.dumps(acl),
                json.dumps(acl_deny or []),
                acl_note,
            )

    def set_captions(self, doc_id: str, status: str | None) -> None:
        with self.session() as s:
            row_of(s, doc_id).captions = status

    def caption_counts(self) -> dict[str, int]:
        """Documents with figures by caption status: captioned, pending, off, failed."""
        with self.session() as s:
            rows = s.execute(
                select(DocumentRow.captions, func.count())
                .where(DocumentRow.captions.is_not(None), DocumentRow.status != DELETED)
                .group_by(DocumentRow.captions)
            )
            return {str(status): int(n) for status, n in rows}

    def with_acl_note(self, limit: int | None = None) -> list[DocumentRecord]:
        """Documents whose permissions could not be read (readable by nobody)."""
        with self.session() as s:
            query = select(DocumentRow).where(
                DocumentRow.acl_note.is_not(None), DocumentRow.status != DELETED
            )
            return [
                DocumentRecord.of(r)
                for r in s.scalars(query.order_by(DocumentRow.path).limit(limit))
            ]

    def failed(self) -> list[DocumentRecord]:
        with self.session() as s:
            query = select(DocumentRow).where(DocumentRow.status == FAILED)
            return [DocumentRecord.of(r) for r in s.scalars(query.order_by(DocumentRow.path))]

    def mark_pending(self, doc_id: str, reason: str | None = None) -> None:
        """To be processed again although its file did not change (a member of it waits)."""
        with self.session() as s:
            row = row_of(s, doc_id)
            row.status, row.error = PENDING, reason

    def reset_failed(self, doc_ids: Iterable[str]) -> int:
        """Failed documents become pending again (``retry --failed``), their attempts zeroed."""
        ids = list(doc_ids)
        with self.session() as s:
            result = s.execute(
                update(DocumentRow)
                .where(DocumentRow.id.in_(ids), DocumentRow.status == FAILED)
                .values(status=PENDING, attempts=0, lease_until=None, lease_owner=None)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
