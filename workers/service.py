"""The embedded service (``shareindex run``): reconcile, watch, index, serve queries.

One process holds the index (Qdrant local mode allows no other), so the query API lives here
and other commands reach the index through it; ``service.json`` in the data dir tells them where.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from workers.api import create_app
from workers.auth import Authenticator, Caller, TokenEntry, new_token
from workers.indexer import SyncReport
from workers.runtime import Runtime
from workers.settings import ConfigError, Settings
from workers.status import status_report
from workers.watcher import RESCAN, Change, Debouncer, start_observers

log = logging.getLogger(__name__)
SERVICE_FILE = "service.json"
_RETRY_S = 10.0


def _token_entries(settings: Settings) -> list[TokenEntry]:
    return [
        TokenEntry(t.sha256, Caller(t.name, t.user, tuple(t.groups), t.on_behalf, t.admin))
        for t in settings.api_tokens
    ]


def read_service_info(data_dir: Path) -> dict[str, Any] | None:
    """The running service of a data dir, if its process is alive."""
    try:
        info = json.loads((data_dir / SERVICE_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the query API on {host}:{port}: {exc.strerror}"
            ) from exc


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
        self.token, local_hash = new_token()  # the local CLI's: trusted, admin, owner-only file
        local = TokenEntry(local_hash, Caller("local", on_behalf=True, admin=True))
        self.auth = Authenticator(
            [local, *_token_entries(settings)], expand_groups=settings.expand_groups
        )
        self.url = f"http://{settings.api_host}:{settings.api_port}"
        self._server: uvicorn.Server | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self, handle_signals: bool = True) -> int:
        check_port_free(self.settings.api_host, self.settings.api_port)
        previous = {}
        if handle_signals:
            previous = {
                sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        observers: list[Any] = []
        server_thread: threading.Thread | None = None
        try:
            # watching starts before reconciling: nothing that happens meanwhile is missed
            observers = start_observers(self.shares, self.events, self.settings.polling_shares,
                                        self.settings.polling_interval_s)  # fmt: skip
            server_thread = self._start_api()
            self._write_service_file()
            self.say(
                f"query API on {self.url}; watching {', '.join(f'{n}={r}' for n, r in self.shares.items())}"
            )
            next_reconcile = self._guarded(self._reconcile)
            while not self.stop.is_set():
                self._drain_events(timeout=0.05)
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
            if self._server:
                self._server.should_exit = True
            for observer in observers:
                observer.join(timeout=5)
            if server_thread:
                server_thread.join(timeout=10)
            self._remove_service_file()
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
        self.auth.tokens = [self.auth.tokens[0], *_token_entries(fresh)]
        self.auth.expand_groups = fresh.expand_groups
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

    def _drain_events(self, timeout: float) -> None:
        try:
            batch = [self.events.get(timeout=timeout)]
        except queue.Empty:
            return
        while True:
            try:
                batch.append(self.events.get_nowait())
            except queue.Empty:
                break
        self.debouncer.add(batch)

    def _stable(self, share: str, paths: dict[str, float]) -> dict[str, float]:
        """Paths whose mtime has stood still for the debounce delay; the others wait more
        (a writer that never closes the file, a polled network share)."""
        now = time.time()
        ready = {}
        for path, first in paths.items():
            if path != RESCAN:
                try:
                    age = now - os.lstat(os.path.join(self.shares[share], path)).st_mtime
                except OSError:
                    age = self.settings.debounce_s  # gone: nothing to wait for
                if 0 <= age < self.settings.debounce_s:
                    self.debouncer.rearm(share, path, first)
                    continue
            ready[path] = first
        return ready

    def _index_due(self, share: str, paths: dict[str, float]) -> None:
        self._index_paths(share, self._stable(share, paths))

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

    # -- query API ----------------------------------------------------------------------------
    def _start_api(self) -> threading.Thread:
        searcher = self.runtime.searcher
        app = create_app(
            searcher, lambda: status_report(self.runtime.catalog, self._info()), self.auth
        )
        config = uvicorn.Config(app, host=self.settings.api_host, port=self.settings.api_port,
                                log_level="warning", lifespan="off")  # fmt: skip
        self._server = uvicorn.Server(config)
        thread = threading.Thread(target=self._server.run, name="query-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise ConfigError(f"the query API did not start on {self.url}")
        return thread

    def _info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "url": self.url}

    def _write_service_file(self) -> None:
        path = self.settings.data_dir / SERVICE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({**self._info(), "token": self.token}, fh)

    def _remove_service_file(self) -> None:
        path = self.settings.data_dir / SERVICE_FILE
        info = read_service_info(self.settings.data_dir)
        if info is None or info.get("pid") == os.getpid():
            path.unlink(missing_ok=True)
