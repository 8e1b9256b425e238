"""The catalog: the durable record of every document, what it should look like in the index.

SQLAlchemy; SQLite in the data dir by default, PostgreSQL by URL. The queue and the watcher are
only transport: what is ``pending`` here is what still has to reach the index.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from index.sql import create_tables

PENDING, INDEXED, FAILED, SKIPPED, DELETED = "pending", "indexed", "failed", "skipped", "deleted"
STATUSES = (PENDING, INDEXED, FAILED, SKIPPED, DELETED)


class CatalogError(Exception):
    """The catalog database cannot be opened or used."""


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("share", "path", name="uq_documents_share_path"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    share: Mapped[str] = mapped_column(String(200), index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    #: hash of the content the index holds (set only when a version is indexed)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the version the index holds (0: none yet)
    version: Mapped[int] = mapped_column(Integer, default=0)
    #: the highest version number handed out; writers of different content never share a number
    next_version: Mapped[int] = mapped_column(Integer, default=0)
    #: the content hash that number was handed out for
    pending_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=PENDING)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    filetype: Mapped[str | None] = mapped_column(String(16), nullable=True)
    acl: Mapped[str] = mapped_column(Text, default="[]")
    acl_deny: Mapped[str] = mapped_column(Text, default="[]")
    #: set when the permissions could not be read (the document is then readable by nobody)
    acl_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: distributed mode: the newest dispatch of this document; a message with another token is
    #: stale and dropped, so a re-dispatch never makes two workers process the same change
    dispatch_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: the worker process working on it (None: waiting in a queue)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: figures: "captioned", "pending" (the VLM was down: added later), "off" (no VLM), None
    captions: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: takes by workers that never finished (the worker died): a poison document is failed
    unfinished: Mapped[int] = mapped_column(Integer, default=0)
    #: a pending document whose lease ran out is re-dispatched by the reconciler
    lease_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now
    )
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VersionRow(Base):
    """History: one row per version that reached the index."""

    __tablename__ = "document_versions"

    doc_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class FreshnessRow(Base):
    """Seconds from a change on the share to the change being searchable."""

    __tablename__ = "freshness_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    share: Mapped[str] = mapped_column(String(200), index=True)
    change: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class StagedRow(Base):
    """Distributed mode: a parsed document waiting for its embedding, referenced by the message
    (parsed data never travels through the broker)."""

    __tablename__ = "staged_documents"

    doc_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    share: str
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    version: int
    status: str
    error: str | None
    chunk_count: int
    acl: list[str]
    acl_deny: list[str]
    acl_note: str | None
    attempts: int
    updated_at: datetime
    indexed_at: datetime | None
    dispatch_token: str | None = None
    lease_owner: str | None = None
    unfinished: int = 0
    captions: str | None = None

    @classmethod
    def of(cls, row: DocumentRow) -> DocumentRecord:
        return cls(
            id=row.id, share=row.share, path=row.path, size=row.size, mtime_ns=row.mtime_ns,
            content_hash=row.content_hash, version=row.version, status=row.status, error=row.error,
            chunk_count=row.chunk_count, acl=json.loads(row.acl or "[]"), acl_deny=json.loads(row.acl_deny or "[]"),
            acl_note=row.acl_note, attempts=row.attempts,
            updated_at=row.updated_at, indexed_at=row.indexed_at,
            dispatch_token=row.dispatch_token, lease_owner=row.lease_owner, unfinished=row.unfinished or 0,
            captions=row.captions,
        )  # fmt: skip


class Catalog:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = _engine(url)
            create_tables(Base.metadata, self.engine)
        except OperationalError as exc:
            raise CatalogError(f"cannot open the catalog at {_safe_url(url)}: {exc.orig}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

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

    def counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(DocumentRow.status, func.count()).group_by(DocumentRow.status))
            found = {status: n for status, n in rows}
        return {status: found.get(status, 0) for status in STATUSES}

    def with_status(self, status: str, limit: int | None = None) -> list[DocumentRecord]:
        with self.session() as s:
            query = (
                select(DocumentRow)
                .where(DocumentRow.status == status)
                .order_by(DocumentRow.share, DocumentRow.path)
            )
            return [DocumentRecord.of(r) for r in s.scalars(query.limit(limit))]

    def versions(self, doc_id: str) -> list[VersionRow]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(VersionRow)
                    .where(VersionRow.doc_id == doc_id)
                    .order_by(VersionRow.version)
                )
            )

    # -- writes ----------------------------------------------------------------------------
    def upsert_seen(
        self, doc_id: str, share: str, path: str, size: int, mtime_ns: int, acl: list[str],
        acl_deny: list[str] | None = None, acl_note: str | None = None,
    ) -> None:  # fmt: skip
        """Record that a file exists and still has to be processed (status pending)."""
        with self.session() as s:
            row = s.get(DocumentRow, doc_id)
            if row is None:
                row = DocumentRow(id=doc_id, share=share, path=path, version=0, attempts=0)
                s.add(row)
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
            row = _row(s, doc_id)
            row.size, row.mtime_ns, row.status, row.error = size, mtime_ns, INDEXED, None

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
        """Compare-and-set: make ``version`` the indexed one unless a newer one already is.

        Its points must be written already. The document stays ``pending`` until
        ``finish_version``: a crash in between is redone by the next sync.
        """
        with self.session() as s:
            result = s.execute(
                update(DocumentRow)
                .where(DocumentRow.id == doc_id, DocumentRow.version <= version)
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
            row = _row(s, doc_id)
            if row.version != version:  # a newer version was claimed meanwhile: it finishes itself
                return
            row.chunk_count, row.filetype = chunk_count, filetype
            row.status, row.error, row.attempts, row.indexed_at = INDEXED, None, 0, _now()
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

    def repoint(
        self, doc_id: str, path: str, size: int, mtime_ns: int, acl: list[str], acl_deny: list[str]
    ) -> None:
        """A moved or renamed file: same document, same version, new path."""
        with self.session() as s:
            row = _row(s, doc_id)
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

    def record_freshness(self, share: str, change: str, seconds: float) -> None:
        with self.session() as s:
            row = FreshnessRow(share=share, change=change, seconds=seconds)
            s.add(row)
            s.flush()
            sample = row.id
        if sample % 500 == 0:  # keep the table bounded; status reads only the newest samples
            self.prune_freshness()

    def freshness(self, last: int = 1000) -> dict[str, Any]:
        """p50, p95 and last of the most recent samples, and the sample count."""
        with self.session() as s:
            rows = list(
                s.scalars(select(FreshnessRow).order_by(FreshnessRow.id.desc()).limit(last))
            )
        if not rows:
            return {"samples": 0, "p50_s": None, "p95_s": None, "last_s": None, "last_at": None}
        values = sorted(r.seconds for r in rows)
        return {
            "samples": len(values),
            "p50_s": round(_quantile(values, 0.5), 3),
            "p95_s": round(_quantile(values, 0.95), 3),
            "last_s": round(rows[0].seconds, 3),
            "last_at": rows[0].at.isoformat(timespec="seconds"),
        }

    def prune_freshness(self, keep: int = 10_000) -> None:
        with self.session() as s:
            newest = s.scalar(select(func.max(FreshnessRow.id)))
            if newest is not None and newest > keep:
                s.execute(delete(FreshnessRow).where(FreshnessRow.id <= newest - keep))

    def pending_since(self) -> dict[str, datetime]:
        """Per share, since when its oldest pending document has waited."""
        with self.session() as s:
            rows = s.execute(
                select(DocumentRow.share, func.min(DocumentRow.updated_at))
                .where(DocumentRow.status == PENDING)
                .group_by(DocumentRow.share)
            )
            return {share: _aware(at) for share, at in rows}

    def mark_failed(self, doc_id: str, status: str, reason: str) -> None:
        """A permanent error (``failed``), nothing to index (``skipped``) or a transient error
        (``pending``), with its reason. The indexed version, if any, stays as it was."""
        with self.session() as s:
            row = _row(s, doc_id)
            row.status, row.error = status, reason
            row.attempts += 1
            row.unfinished, row.lease_owner = 0, None

    def mark_deleted(self, doc_ids: Iterable[str]) -> None:
        """Tombstones: the file is gone; its row stays, with its history."""
        with self.session() as s:
            for doc_id in doc_ids:
                row = _row(s, doc_id)
                row.status, row.error, row.chunk_count = DELETED, None, 0

    def set_acl(
        self,
        doc_id: str,
        acl: list[str],
        acl_deny: list[str] | None = None,
        acl_note: str | None = None,
    ) -> None:
        with self.session() as s:
            row = _row(s, doc_id)
            row.acl, row.acl_deny, row.acl_note = (
                json.dumps(acl),
                json.dumps(acl_deny or []),
                acl_note,
            )

    def set_captions(self, doc_id: str, status: str | None) -> None:
        with self.session() as s:
            _row(s, doc_id).captions = status

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

    # -- distributed mode: dispatches, leases, staged parse results ------------------------
    # A pending document is either waiting in a queue (lease_owner None, lease_until = when to
    # stop trusting the queue) or being worked on (lease_owner set, lease_until extended by the
    # worker's heartbeat). When the lease runs out, the reconciler dispatches it again.
    def dispatch(self, doc_id: str, wait_s: float) -> str | None:
        """A fresh token for a pending document about to be queued; None if it is not pending."""
        token = uuid.uuid4().hex
        done = self._lease(
            doc_id, None, dispatch_token=token, lease_owner=None, lease_until=_after(wait_s)
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
            DocumentRow.lease_owner.is_(None) | (DocumentRow.lease_until < _now())
        )
        with self.session() as s:
            result = s.execute(
                stmt.values(
                    lease_owner=owner,
                    lease_until=_after(lease_s),
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
        return self._lease(
            doc_id, token, lease_owner=None, lease_until=_after(wait_s), unfinished=0
        )

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
                .values(lease_until=_after(lease_s), updated_at=DocumentRow.updated_at)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def expired(self, limit: int = 1000) -> list[DocumentRecord]:
        """Pending documents nobody is known to be working on or waiting for."""
        with self.session() as s:
            query = (
                select(DocumentRow)
                .where(
                    DocumentRow.status == PENDING,
                    (DocumentRow.lease_until.is_(None)) | (DocumentRow.lease_until < _now()),
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
                    DocumentRow.updated_at < _after(-wait_s),
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

    def stage(self, doc_id: str, token: str, data: bytes) -> None:
        with self.session() as s:
            row = s.get(StagedRow, doc_id)
            if row is None:
                s.add(StagedRow(doc_id=doc_id, token=token, data=data))
            else:
                row.token, row.data, row.created_at = token, data, _now()

    def staged(self, doc_id: str, token: str) -> bytes | None:
        with self.session() as s:
            row = s.get(StagedRow, doc_id)
            return row.data if row is not None and row.token == token else None

    def staged_waiting(self, limit: int, exclude: str = "") -> list[tuple[str, str]]:
        """(doc id, token) of parsed documents waiting for the embed step that no worker holds,
        oldest first: an embed task takes some along, for batches across documents."""
        with self.session() as s:
            rows = s.execute(
                select(StagedRow.doc_id, StagedRow.token)
                .join(DocumentRow, DocumentRow.id == StagedRow.doc_id)
                .where(
                    DocumentRow.status == PENDING,
                    DocumentRow.dispatch_token == StagedRow.token,
                    DocumentRow.lease_owner.is_(None),
                    StagedRow.doc_id != exclude,
                )
                .order_by(StagedRow.created_at)
                .limit(limit)
            )
            return [(doc_id, token) for doc_id, token in rows]

    def unstage(self, doc_id: str) -> None:
        with self.session() as s:
            s.execute(delete(StagedRow).where(StagedRow.doc_id == doc_id))

    def failed(self) -> list[DocumentRecord]:
        with self.session() as s:
            query = select(DocumentRow).where(DocumentRow.status == FAILED)
            return [DocumentRecord.of(r) for r in s.scalars(query.order_by(DocumentRow.path))]

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


def _after(seconds: float) -> datetime:
    return _now() + timedelta(seconds=seconds)


def _lease_update(doc_id: str, token: str | None) -> Any:
    stmt = update(DocumentRow).where(DocumentRow.id == doc_id, DocumentRow.status == PENDING)
    return stmt.where(DocumentRow.dispatch_token == token) if token is not None else stmt


def _quantile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _aware(at: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _row(session: Session, doc_id: str) -> DocumentRow:
    row = session.get(DocumentRow, doc_id)
    if row is None:
        raise KeyError(f"no document {doc_id} in the catalog")
    return row


def _engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers (status) never block the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
