"""Recording what happened to a document: its failure (with the reason status shows), or how
long its change took to become searchable (freshness)."""

from __future__ import annotations

import time

from index.catalog import SKIPPED, Catalog
from workers import metrics
from workers.sync.report import SyncReport


class Outcomes:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def error(
        self, doc_id: str, share: str, path: str, status: str, reason: str, report: SyncReport
    ) -> None:
        """``failed`` (bad input), ``skipped`` (nothing to index) or ``pending`` (an outage)."""
        self.catalog.mark_failed(doc_id, status, reason)
        metrics.DOCUMENTS.labels(share, status).inc()
        if status == SKIPPED:
            report.skipped += 1
            report.skipped_reasons[reason] += 1
        else:
            report.fail(share, path, status, reason)

    def searchable(self, share: str, change: str, changed_at: float, backlog: int = 0) -> None:
        """Freshness: from the change to the moment it is searchable; ``backlog``: documents
        waiting or in progress when the change was routed (0: an idle service)."""
        seconds = max(0.0, time.time() - changed_at)
        metrics.FRESHNESS.labels(share, change).observe(seconds)
        metrics.FRESHNESS_UNDER_LOAD.labels(share, change, metrics.backlog_class(backlog)).observe(
            seconds
        )
        metrics.DOCUMENTS.labels(share, change).inc()
        self.catalog.record_freshness(share, change, seconds)
