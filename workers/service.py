"""The embedded service (``shareindex run``): reconcile, watch, index, serve queries.

One process holds the index (Qdrant local mode allows no other), so the query API lives here
and other commands reach the index through it; ``service.json`` in the data dir tells them where.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

from workers.apiserver import QueryServer, check_port_free, read_service_info
from workers.indexer import SyncReport
from workers.runtime import Runtime
from workers.settings import Settings
from workers.status import status_report
from workers.watcher import RESCAN, Change, Debouncer, drain_events, settled, start_observers

__all__ = ["EmbeddedService", "check_port_free", "read_service_info"]

log = logging.getLogger(__name__)
_RETRY_S = 10.0


class EmbeddedService:
    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        say: Any = print,
        config_file: str | None = None,
        reload: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.config_file = config_file
        self.reload = reload
        self._config_mtime = self._config_stamp()
        self.runtime = runtime
        self.say = say
        self.stop = threading.Event()
        self.events: queue.Queue[Change] = queue.Queue()
        self.debouncer = Debouncer(settings.debounce_s, settings.write_settle_s)
        self.shares = {name: str(root) for name, root in settings.shares.items()}
        self.api = QueryServer(
            settings, runtime.searcher, lambda: status_report(runtime.catalog, self.api.info()),
            pending_since=runtime.catalog.pending_since,
        )  # fmt: skip
        self.url = self.api.url

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self, handle_signals: bool = True) -> int:
        check_port_free(self.settings.api_host, self.settings.api_port)
        previous = {}
        if handle_signals:
            previous = {
                sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        observers: list[Any] = []
        try:
            # watching starts before reconciling: nothing that happens meanwhile is missed
            observers = start_observers(self.shares, self.events, self.settings.polling_shares,
                                        self.settings.polling_interval_s)  # fmt: skip
            self.api.start()
            self.say(
                f"query API on {self.url}; watching {', '.join(f'{n}={r}' for n, r in self.shares.items())}"
            )
            next_reconcile = self._guarded(self._reconcile)
            while not self.stop.is_set():
                drain_events(self.events, self.debouncer, timeout=0.05)
                for share, paths in self.debouncer.due().items():
                    if self.stop.is_set():
                        break
                    next_reconcile = min(
                        next_reconcile, self._guarded(partial(self._index_due, share, paths))
                    )
                if self._config_changed() or time.monotonic() >= next_reconcile:
                    next_reconcile = self._guarded(self._reconcile)
        finally:
            self.say("stopping: finishing the current write")
            for observer in observers:
                observer.stop()
            self.api.stop()
            for observer in observers:
                observer.join(timeout=5)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.say("stopped cleanly")
        return 0

    def _config_stamp(self) -> float | None:
        try:
            return os.stat(self.config_file).st_mtime if self.config_file else None
        except OSError:
            return None

    def _config_changed(self) -> bool:
        """An edited config file: new share rules and API tokens apply at once (the reconcile
        that follows rewrites the ACL of every document whose readers changed, without
        re-embedding)."""
        stamp = self._config_stamp()
        if stamp == self._config_mtime or self.reload is None:
            return False
        self._config_mtime = stamp
        try:
            fresh = self.reload()
        except Exception as exc:  # a half-saved or wrong file: keep running on the old settings
            self.say(f"config file {self.config_file} not reloaded: {exc}")
            return False
        self.runtime.indexer.permissions.rules = tuple(fresh.rules())
        self.api.reload_tokens(fresh)
        self.say(
            f"config file reloaded: {len(fresh.acl_rules)} rule(s), {len(fresh.api_tokens)} API token(s)"
        )
        return True

    def _guarded(self, work: Callable[[], object]) -> float:
        """Run one step of indexing; an unexpected error is logged, not fatal: the catalog still
        holds what is pending, and a reconcile soon picks it up. Returns when to reconcile next."""
        try:
            work()
        except Exception as exc:
            log.exception("indexing step failed")
            self.say(
                f"indexing step failed ({type(exc).__name__}: {exc}); retrying with a reconcile in {_RETRY_S:g} s"
            )
            return time.monotonic() + _RETRY_S
        return time.monotonic() + self.settings.reconcile_interval_s

    def request_stop(self) -> None:
        self.stop.set()
        self.runtime.indexer.stop.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_stop()

    # -- indexing -----------------------------------------------------------------------------
    def _reconcile(self) -> None:
        total = SyncReport()
        for share, root in self.shares.items():
            if self.stop.is_set():
                break
            total.add(self.runtime.indexer.sync_share(share, root))
        docs = total.to_dict()["documents"]
        self.say(
            "reconciled: "
            + ", ".join(f"{n} {k}" for k, n in docs.items() if n)
            + f" in {total.seconds:.1f} s"
        )

    def _index_due(self, share: str, paths: dict[str, float]) -> None:
        ready = settled(self.shares[share], share, paths, self.debouncer, self.settings.debounce_s)
        self._index_paths(share, ready)

    def _index_paths(self, share: str, paths: dict[str, float]) -> None:
        if not paths:
            return
        indexer = self.runtime.indexer
        root = self.shares[share]
        report = (
            indexer.sync_share(share, root)
            if RESCAN in paths
            else indexer.sync_paths(share, root, paths)
        )
        for failure in report.failures:
            log.warning(
                "%s:%s %s: %s",
                failure["share"],
                failure["path"],
                failure["status"],
                failure["reason"],
            )
        changes = {k: n for k, n in report.to_dict()["documents"].items() if n and k != "unchanged"}
        if changes:
            self.say(f"{share}: " + ", ".join(f"{n} {k}" for k, n in changes.items()))
