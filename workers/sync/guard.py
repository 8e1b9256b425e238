"""A share that looks emptied is not a reason to empty the index: the deletions a reconcile would
make are held when the share's root is gone or is another folder or device than at the last
pass (a mount that dropped), or when they would take too much of the share at once."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from index.catalog import DELETED, Catalog, DocumentRecord
from workers import metrics
from workers.sources.base import Source
from workers.sync.report import SyncReport

log = logging.getLogger(__name__)


class DeletionGuard:
    def __init__(self, catalog: Catalog, max_delete_fraction: float = 0.5,
                 delete_guard_min: int = 3) -> None:  # fmt: skip
        self.catalog = catalog
        self.max_delete_fraction = max_delete_fraction
        self.delete_guard_min = delete_guard_min

    def check(
        self, source: Source, known: Mapping[str, DocumentRecord], gone: list[DocumentRecord],
        report: SyncReport,
    ) -> list[DocumentRecord]:  # fmt: skip
        """A share that looks emptied is not a reason to empty the index: the deletions of a
        reconcile are held when the share's root is gone or is another folder or device than
        at the last pass (a mount that dropped), or when they would take more than
        ``max_delete_fraction`` of its documents at once; until the files return (then nothing
        is redone) or an operator confirms (``shareindex deletes --confirm SHARE``)."""
        name = source.name
        identity = source.root_identity()
        state = self.catalog.share_state(name)
        live = sum(1 for r in known.values() if r.status != DELETED and r.parent_id is None)
        reason = None
        if identity is None:
            reason = f"the share root {source.location} is missing or unreachable"
        elif gone and state is not None and state.root not in (None, identity):
            reason = (f"the share root {source.location} is another folder or device than at "
                      "the last pass (a mount that dropped or changed?)")  # fmt: skip
        elif len(gone) >= self.delete_guard_min and len(gone) > self.max_delete_fraction * live:
            reason = (f"{len(gone)} of {live} documents would be deleted at once (more than "
                      f"{self.max_delete_fraction:.0%} of the share)")  # fmt: skip
        if reason is not None and not (state is not None and state.confirmed and gone):
            if gone:
                self.catalog.hold_deletions(name, len(gone), reason)
                report.held_deletions[name] = {"documents": len(gone), "reason": reason}
                metrics.DELETIONS_HELD.labels(name).set(len(gone))
                log.warning("%s: %d deletion(s) held: %s; when this is right: "
                            "shareindex deletes --confirm %s", name, len(gone), reason, name)  # fmt: skip
            return []
        if identity is not None:
            self.catalog.share_passed(name, identity)  # (a confirmation is used up)
        metrics.DELETIONS_HELD.labels(name).set(0)
        return gone
