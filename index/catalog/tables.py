"""The catalog's tables, and the record a read of a document gives."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

PENDING, INDEXED, FAILED, SKIPPED, DELETED = "pending", "indexed", "failed", "skipped", "deleted"
STATUSES = (PENDING, INDEXED, FAILED, SKIPPED, DELETED)


def now() -> datetime:
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
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
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
    #: a document inside another (a mail attachment, an archive member): that file's document;
    #: it comes, goes, moves and changes readers with it
    parent_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    #: a deleted document whose points are kept, readable by nobody, until then: the same
    #: content coming back (under any path) reuses their vectors instead of re-embedding
    kept_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VersionRow(Base):
    """History: one row per version that reached the index."""

    __tablename__ = "document_versions"

    doc_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class FreshnessRow(Base):
    """Seconds from a change on the share to the change being searchable."""

    __tablename__ = "freshness_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    share: Mapped[str] = mapped_column(String(200), index=True)
    change: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ShareRow(Base):
    """A share across passes: what its root was at the last pass (a mount that dropped shows as
    another root) and the deletions held back until the files return or an operator confirms."""

    __tablename__ = "shares"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    root: Mapped[str | None] = mapped_column(String(300), nullable=True)
    held: Mapped[int] = mapped_column(Integer, default=0)
    held_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    held_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: an operator confirmed the held deletions: the next reconcile carries them out
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the share layer of readers (JSON lists of tokens; NULL: never read), where it came from
    #: and why it is unknown
    acl: Mapped[str | None] = mapped_column(Text, nullable=True)
    acl_deny: Mapped[str | None] = mapped_column(Text, nullable=True)
    acl_origin: Mapped[str | None] = mapped_column(String(20), nullable=True)
    acl_warning: Mapped[str | None] = mapped_column(Text, nullable=True)


class StagedRow(Base):
    """Distributed mode: a parsed document waiting for its embedding, referenced by the message
    (parsed data never travels through the broker)."""

    __tablename__ = "staged_documents"

    doc_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


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
    parent_id: str | None = None
    filetype: str | None = None
    kept_until: datetime | None = None

    @property
    def kept(self) -> bool:
        """Deleted, its points still kept (hidden) for the reuse of their vectors."""
        until = self.kept_until
        if until is None:
            return False
        if until.tzinfo is None:  # SQLite gives naive datetimes back
            until = until.replace(tzinfo=UTC)
        return self.status == DELETED and until > datetime.now(UTC)

    @classmethod
    def of(cls, row: DocumentRow) -> DocumentRecord:
        return cls(
            id=row.id, share=row.share, path=row.path, size=row.size, mtime_ns=row.mtime_ns,
            content_hash=row.content_hash, version=row.version, status=row.status, error=row.error,
            chunk_count=row.chunk_count, acl=json.loads(row.acl or "[]"), acl_deny=json.loads(row.acl_deny or "[]"),
            acl_note=row.acl_note, attempts=row.attempts,
            updated_at=row.updated_at, indexed_at=row.indexed_at,
            dispatch_token=row.dispatch_token, lease_owner=row.lease_owner, unfinished=row.unfinished or 0,
            captions=row.captions, parent_id=row.parent_id, filetype=row.filetype,
            kept_until=row.kept_until,
        )  # fmt: skip
