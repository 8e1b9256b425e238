"""What the rest of the system may ask of the catalog, as Protocols: each user takes the part it
needs (the planner the documents, the writer the versions, the Celery tasks the leases and the
staging area). ``SqlCatalog`` implements them all; ``tests/index/test_catalog.py`` is their one
contract suite, run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any, Protocol

from index.catalog.shares import ShareReaders, ShareState
from index.catalog.tables import DocumentRecord, VersionRow


class Documents(Protocol):
    """Documents: where each file is, its status and readers."""

    def documents(self, share: str) -> dict[str, DocumentRecord]: ...

    def get(self, doc_id: str) -> DocumentRecord | None: ...

    def find(self, share: str, path: str) -> DocumentRecord | None: ...

    def new_id(self, share: str, path: str) -> str: ...

    def find_many(self, share: str, paths: Iterable[str]) -> dict[str, DocumentRecord]: ...

    def counts(self) -> dict[str, int]: ...

    def with_status(self, status: str, limit: int | None = None) -> list[DocumentRecord]: ...

    def upsert_seen(
        self,
        doc_id: str,
        share: str,
        path: str,
        size: int,
        mtime_ns: int,
        acl: list[str],
        acl_deny: list[str] | None = None,
        acl_note: str | None = None,
        parent_id: str | None = None,
        filetype: str | None = None,
    ) -> None: ...

    def format_counts(self) -> dict[str, dict[str, int]]: ...

    def reason_counts(self, status: str) -> dict[str, int]: ...

    def members(self, parent_id: str) -> list[DocumentRecord]: ...

    def mark_pending(self, doc_id: str, reason: str | None = None) -> None: ...

    def mark_unchanged(self, doc_id: str, size: int, mtime_ns: int) -> None: ...

    def repoint(
        self, doc_id: str, path: str, size: int, mtime_ns: int, acl: list[str], acl_deny: list[str]
    ) -> None: ...

    def pending_since(self) -> dict[str, datetime]: ...

    def mark_failed(self, doc_id: str, status: str, reason: str) -> None: ...

    def mark_deleted(self, doc_ids: Iterable[str], kept_until: datetime | None = None) -> None: ...

    def kept_twin(self, content_hash: str) -> DocumentRecord | None: ...

    def restore_indexed(
        self, doc_id: str, share: str, path: str, version: int, content_hash: str,
        chunk_count: int, acl: list[str], acl_deny: list[str], filetype: str | None,
        parent_id: str | None,
    ) -> None: ...  # fmt: skip

    def expired_kept(self, limit: int = 1000) -> list[str]: ...

    def forget_kept(self, doc_ids: Iterable[str]) -> None: ...

    def set_acl(
        self,
        doc_id: str,
        acl: list[str],
        acl_deny: list[str] | None = None,
        acl_note: str | None = None,
    ) -> None: ...

    def set_captions(self, doc_id: str, status: str | None) -> None: ...

    def caption_counts(self) -> dict[str, int]: ...

    def with_acl_note(self, limit: int | None = None) -> list[DocumentRecord]: ...

    def failed(self) -> list[DocumentRecord]: ...

    def reset_failed(self, doc_ids: Iterable[str]) -> int: ...


class Versions(Protocol):
    """Version numbers: allocation, compare-and-set claim, history."""

    def versions(self, doc_id: str) -> list[VersionRow]: ...

    def allocate_version(self, doc_id: str, content_hash: str) -> int: ...

    def claim_version(self, doc_id: str, version: int, content_hash: str) -> bool: ...

    def only_version(self, doc_id: str, version: int) -> bool: ...

    def finish_version(
        self,
        doc_id: str,
        version: int,
        content_hash: str,
        size: int,
        chunk_count: int,
        filetype: str,
    ) -> None: ...

    def mark_indexed(
        self,
        doc_id: str,
        version: int,
        content_hash: str,
        size: int,
        chunk_count: int,
        filetype: str,
    ) -> None: ...


class Leases(Protocol):
    """Dispatch tokens and worker leases (distributed mode)."""

    def dispatch(self, doc_id: str, wait_s: float) -> str | None: ...

    def take(
        self, doc_id: str, token: str, owner: str, lease_s: float
    ) -> DocumentRecord | None: ...

    def release(self, doc_id: str, token: str, wait_s: float) -> bool: ...

    def heartbeat(self, owner: str, lease_s: float, doc_ids: Collection[str]) -> int: ...

    def expired(self, limit: int = 1000) -> list[DocumentRecord]: ...

    def captions_due(self, wait_s: float, limit: int = 1000) -> list[DocumentRecord]: ...


class Staging(Protocol):
    """Parse results waiting for the embed step."""

    def stage(self, doc_id: str, token: str, data: bytes) -> None: ...

    def staged(self, doc_id: str, token: str) -> bytes | None: ...

    def staged_waiting(
        self, limit: int, exclude: str = "", max_unfinished: int | None = None
    ) -> list[tuple[str, str]]: ...

    def unstage(self, doc_id: str) -> None: ...


class Freshness(Protocol):
    """Freshness samples and their quantiles."""

    def record_freshness(self, share: str, change: str, seconds: float) -> None: ...

    def freshness(self, last: int = 1000) -> dict[str, Any]: ...

    def prune_freshness(self, keep: int = 10_000) -> None: ...


class Shares(Protocol):
    """Each share's root identity, the deletions held back and the share's own readers
    (``index.catalog.shares``)."""

    def share_state(self, name: str) -> ShareState | None: ...

    def share_passed(self, name: str, root: str) -> None: ...

    def hold_deletions(self, name: str, count: int, reason: str) -> None: ...

    def confirm_deletions(self, name: str) -> int: ...

    def held_deletions(self) -> dict[str, dict[str, Any]]: ...

    def share_readers(self, name: str) -> ShareReaders | None: ...

    def set_share_readers(self, name: str, readers: ShareReaders) -> None: ...

    def share_warnings(self) -> dict[str, str]: ...


class Catalog(Documents, Versions, Leases, Staging, Freshness, Shares, Protocol):
    """The whole catalog: the durable record of every document."""

    def close(self) -> None: ...
