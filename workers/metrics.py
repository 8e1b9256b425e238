"""Prometheus metrics of the indexing process (served on the query API's /metrics)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

FRESHNESS = Histogram(
    "shareindex_freshness_seconds",
    "Seconds from a change on a share (file event, or mtime when found by reconciliation) to it being searchable",
    ["share", "change"],
    buckets=(0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 1800, 3600, 86400),
)
FRESHNESS_UNDER_LOAD = Histogram(
    "shareindex_freshness_by_backlog_seconds",
    "The same seconds as shareindex_freshness_seconds, by the backlog when the change was routed "
    "(documents waiting or in progress: 0 is an idle service; the p95 users feel under load is "
    "in the other classes)",
    ["share", "change", "backlog"],
    buckets=FRESHNESS._upper_bounds[:-1],
)


def backlog_class(documents: int) -> str:
    """The ``backlog`` label: 0, 1-9, 10-99, 100-999, 1000+ documents."""
    if documents <= 0:
        return "0"
    for bound in (10, 100, 1000):
        if documents < bound:
            return f"{bound // 10 if bound > 10 else 1}-{bound - 1}"
    return "1000+"


VERIFY_DRIFT = Gauge(
    "shareindex_verify_drift",
    "Drift found by the last verify (shareindex verify, or the scheduled one: verify_interval_s)",
    ["kind"],
    multiprocess_mode="liveall",
)
DELETIONS_HELD = Gauge(
    "shareindex_deletions_held",
    "Deletions a reconcile held back because the share looked emptied (its root gone or "
    "changed, or more than max_delete_fraction of it at once); 0: none",
    ["share"],
    multiprocess_mode="liveall",
)
DOCUMENTS = Counter(
    "shareindex_documents_total", "Documents processed, by outcome", ["share", "outcome"]
)
EMBEDDINGS = Counter("shareindex_embeddings_total", "Chunk texts embedded (not reused)")
REUSED = Counter("shareindex_reused_vectors_total", "Chunk vectors reused from a previous version")
STAGE_SECONDS = Histogram(
    "shareindex_stage_seconds",
    "Seconds spent per document in each stage of the distributed pipeline",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
QUEUE_WAIT = Histogram(
    "shareindex_queue_wait_seconds",
    "Seconds a task waited in its queue before a worker started it",
    ["queue"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600),
)
TASKS = Counter("shareindex_tasks_total", "Celery tasks by name and outcome", ["task", "outcome"])


class BacklogCollector(Collector):
    """``shareindex_behind_seconds{share}``: the age of each share's oldest pending document,
    read from the catalog at each scrape (the freshness lag now, where the histogram above only
    sees documents once they are done). A share that is caught up has no sample."""

    def __init__(self, pending_since: Callable[[], dict[str, datetime]]) -> None:
        self.pending_since = pending_since

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "shareindex_behind_seconds",
            "Age of the oldest pending document of each share (how far indexing is behind)",
            labels=["share"],
        )
        try:
            since = self.pending_since()
        except Exception as exc:  # the catalog is down: no sample rather than a failed scrape
            log.warning("backlog metric not read: %s", exc)
            since = {}
        now = datetime.now(UTC)
        for share, at in sorted(since.items()):
            gauge.add_metric([share], max(0.0, (now - at).total_seconds()))
        yield gauge
