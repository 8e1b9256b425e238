"""The embedded service (``shareindex run``): reconcile, watch, index, serve queries.

One process holds the index (Qdrant local mode allows no other), so the query API lives here
and other commands reach the index through it; ``service.json`` in the data dir tells them where.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from workers.query.client import read_service_info
from workers.query.server import check_port_free, serve_queries
from workers.runtime import Runtime
from workers.settings import Settings
from workers.sources.base import RESCAN
from workers.sync.report import SyncReport
from workers.watch.lanes import BulkLane, say_changes
from workers.watch.loop import RETRY_S, WatchLoop

__all__ = ["EmbeddedService", "check_port_free", "read_service_info"]

log = logging.getLogger(__name__)


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
        self.loop = WatchLoop(runtime.indexer.sources, settings, self)
        self.api: Any = None
        self.url = f"http://{settings.api_host}:{settings.api_port}"
        if runtime.bulk is None:
            raise ValueError("the embedded service needs a runtime opened with lanes")
        #: large documents and bulk arrivals (started with the service)
        self.bulk: BulkLane = runtime.bulk
        #: reconciles asked for from other threads (verify --repair), and those done
        self._asking = threading.Condition()
        self._asked = self._done = 0

    @property
    def events(self) -> Any:
        return self.loop.events

    @property
    def debouncer(self) -> Any:
        return self.loop.debouncer

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self, handle_signals: bool = True) -> int:
        check_port_free(self.settings.api_host, self.settings.api_port)
        try:
            self.bulk.start()
            self.loop.start_watching()  # before the first reconcile: nothing meanwhile is missed
            self.api = serve_queries(
                self.settings, self.runtime.searcher, self.runtime.catalog,
                in_flight=self.in_flight, verify=self.verify,
            )  # fmt: skip
            if self.settings.verify_interval_s:
                threading.Thread(target=self._scheduled_verify, name="verify", daemon=True).start()
            shares = ", ".join(f"{n}={s.location}" for n, s in self.loop.sources.items())
            self.say(f"query API on {self.url}; watching {shares}")
            self.loop.run(handle_signals, on_signal=self.request_stop)
        finally:
            self.say("stopping: finishing the current write")
            self.loop.close()
            self.bulk.close()  # (its parse process is closed with the runtime)
            if self.api is not None:
                self.api.stop()
        self.say("stopped cleanly")
        return 0

    def request_stop(self) -> None:
        self.loop.stop.set()
        self.runtime.indexer.stop.set()
        self.bulk.stop.set()
        self.bulk.processor.stop.set()

    def in_flight(self) -> dict[str, Any]:
        """What the service is working on (``status``): large documents with their progress,
        the bulk backlog by size and the age of its oldest document."""
        return {
            "large_documents": self.runtime.board.large(),
            "bulk_backlog": self.bulk.backlog(),
        }

    # -- the watch loop's handler ---------------------------------------------------------------
    def changed(self, share: str, paths: dict[str, float]) -> bool:
        return self._guarded(lambda: self._index_paths(share, paths))

    def reconcile(self) -> bool:
        return self._guarded(self._reconcile)

    def tick(self) -> bool:
        with self._asking:
            asked = self._asked > self._done
        return self._config_changed() or asked

    def reconcile_now(self, timeout: float) -> bool:
        """Have the watch loop reconcile every share, and wait for it and its bulk work (from
        another thread); False if that took longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._asking:
            self._asked += 1
            wanted = self._asked
            while self._done < wanted:
                if not self._asking.wait(max(0.0, deadline - time.monotonic())):
                    return False
        while not self.bulk.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def verify(self, shares: list[str], fix: bool) -> dict[str, Any]:
        """``shareindex verify`` in this process (the one that holds the index)."""
        from workers.sync.verify import verify_runtime

        def reconcile(_share: str) -> None:
            if not self.reconcile_now(timeout=600):
                raise TimeoutError("the repair's reconcile did not finish within 600 s")

        return verify_runtime(self.runtime, shares, fix, reconcile)

    def _scheduled_verify(self) -> None:
        """Every ``verify_interval_s``: verify (no repair), for shareindex_verify_drift{kind}."""
        while not self.loop.stop.wait(self.settings.verify_interval_s):
            try:
                found = self.verify([], False)
                drift = {k: n for k, n in found["drift"].items() if n}
                if drift:
                    self.say(
                        "verify found drift: " + ", ".join(f"{n} {k}" for k, n in drift.items())
                    )
            except Exception:
                log.exception("scheduled verify failed")

    def _guarded(self, work: Callable[[], object]) -> bool:
        """Run one step of indexing; an unexpected error is logged, not fatal: the catalog still
        holds what is pending, and a reconcile soon picks it up."""
        try:
            work()
        except Exception as exc:
            log.exception("indexing step failed")
            self.say(f"indexing step failed ({type(exc).__name__}: {exc}); "
                     f"retrying with a reconcile in {RETRY_S:g} s")  # fmt: skip
            return False
        return True

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
        self.runtime.rules.replace(fresh.rules())
        if self.api is not None:
            self.api.reload_tokens(fresh)
        self.say(
            f"config file reloaded: {len(fresh.acl_rules)} rule(s), {len(fresh.api_tokens)} API token(s)"
        )
        return True

    # -- indexing -----------------------------------------------------------------------------
    def _reconcile(self) -> None:
        with self._asking:
            asked = self._asked
        try:
            self._reconcile_shares()
        finally:
            with self._asking:
                self._done = max(self._done, asked)
                self._asking.notify_all()

    def _reconcile_shares(self) -> None:
        total = SyncReport()
        for share in self.loop.sources:
            if self.loop.stop.is_set():
                break
            total.add(self.runtime.indexer.sync_share(share))
        docs = total.to_dict()["documents"]
        self.say(
            "reconciled: "
            + ", ".join(f"{n} {k}" for k, n in docs.items() if n)
            + f" in {total.seconds:.1f} s"
        )

    def _index_paths(self, share: str, paths: dict[str, float]) -> None:
        indexer = self.runtime.indexer
        report = indexer.sync_share(share) if RESCAN in paths else indexer.sync_paths(share, paths)
        for f in report.failures:
            log.warning("%s:%s %s: %s", f["share"], f["path"], f["status"], f["reason"])
        say_changes(self.say, share, report)
