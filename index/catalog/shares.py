"""Shares across passes: the identity of each share's root, the deletions held back when a
reconcile would empty a share (a mount that dropped, a folder replaced by an empty one), and the
share's own permissions (the share layer of readers every point of the share carries)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from index.catalog.base import SqlBase
from index.catalog.tables import ShareRow, now


@dataclass(frozen=True)
class ShareState:
    name: str
    root: str | None
    held: int
    held_reason: str | None
    held_since: datetime | None
    confirmed: bool


@dataclass(frozen=True)
class ShareReaders:
    """The share layer as the last pass recorded it."""

    allow: list[str]
    deny: list[str]
    origin: str | None
    warning: str | None


class ShareBook(SqlBase):
    """A share's root identity and its held deletions."""

    def share_state(self, name: str) -> ShareState | None:
        with self.session() as s:
            row = s.get(ShareRow, name)
            if row is None:
                return None
            return ShareState(row.name, row.root, row.held or 0, row.held_reason, row.held_since,
                              bool(row.confirmed))  # fmt: skip

    def _row(self, s: Any, name: str) -> ShareRow:
        row = s.get(ShareRow, name)
        if row is None:
            row = ShareRow(name=name, held=0, confirmed=False)
            s.add(row)
        return row

    def share_passed(self, name: str, root: str) -> None:
        """A pass went through (its deletions done): its root as it is now, nothing held."""
        with self.session() as s:
            row = self._row(s, name)
            row.root, row.held, row.held_reason, row.held_since = root, 0, None, None
            row.confirmed = False

    def hold_deletions(self, name: str, count: int, reason: str) -> None:
        with self.session() as s:
            row = self._row(s, name)
            if not row.held:
                row.held_since = now()
            row.held, row.held_reason = count, reason

    def confirm_deletions(self, name: str) -> int:
        """An operator says the held deletions are real; returns how many are held (0: none,
        nothing confirmed)."""
        with self.session() as s:
            row = s.get(ShareRow, name)
            if row is None or not row.held:
                return 0
            row.confirmed = True
            return row.held

    def held_deletions(self) -> dict[str, dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(ShareRow).where(ShareRow.held > 0).order_by(ShareRow.name))
            return {
                r.name: {
                    "documents": r.held, "reason": r.held_reason, "confirmed": bool(r.confirmed),
                    "since": r.held_since.isoformat(timespec="seconds") if r.held_since else None,
                }
                for r in rows
            }  # fmt: skip

    # -- the share layer of readers ---------------------------------------------------------
    def share_readers(self, name: str) -> ShareReaders | None:
        """The share's own readers as last recorded; None: never read (a writer then writes its
        points readable by nobody, and the pass that records them sets them)."""
        with self.session() as s:
            row = s.get(ShareRow, name)
            if row is None or row.acl is None:
                return None
            return ShareReaders(json.loads(row.acl), json.loads(row.acl_deny or "[]"),
                                row.acl_origin, row.acl_warning)  # fmt: skip

    def set_share_readers(self, name: str, readers: ShareReaders) -> None:
        with self.session() as s:
            row = self._row(s, name)
            row.acl, row.acl_deny = (
                json.dumps(sorted(readers.allow)),
                json.dumps(sorted(readers.deny)),
            )
            row.acl_origin, row.acl_warning = readers.origin, readers.warning

    def share_warnings(self) -> dict[str, str]:
        """Shares whose permissions are unknown: share -> the warning (what to grant)."""
        with self.session() as s:
            rows = s.scalars(select(ShareRow).where(ShareRow.acl_warning.is_not(None)))
            return {r.name: r.acl_warning for r in rows if r.acl_warning}
