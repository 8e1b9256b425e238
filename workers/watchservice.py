"""``shareindex watch``: the distributed mode's watcher. Watches the shares, sends each settled
change to the cpu queue as a plan, plans every share in full at start and every
``reconcile_interval_s``, and dispatches again the documents whose lease ran out (Requeuer).

It never opens the index: with Qdrant in local mode the worker holds it.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from types import FrameType
from typing import Any

from workers.celery_app import make_celery
from workers.distributed import Dispatcher, Requeuer, queued_messages
from workers.runtime import open_catalog
from workers.settings import Settings
from workers.watcher import RESCAN, Change, Debouncer, drain_events, settled, start_observers

log = logging.getLogger(__name__)
_RETRY_S = 10.0


class WatchService:
    def __init__(self, settings: Settings, say: Any = print) -> None:
        self.settings = settings
        self.say = say
        self.app = make_celery(settings)
        self.catalog = open_catalog(settings)
        self.dispatcher = Dispatcher(self.app, self.catalog, settings)
        self.requeuer = Requeuer(self.catalog, self.dispatcher,
                                 lambda: queued_messages(self.app), settings.requeue_after_s)  # fmt: skip
        self.shares = {name: str(root) for name, root in settings.shares.items()}
        self.events: queue.Queue[Change] = queue.Queue()
        self.debouncer = Debouncer(settings.debounce_s, settings.write_settle_s)
        self.stop = threading.Event()

    def run(self, handle_signals: bool = True) -> int:
        previous = {}
        if handle_signals:
            previous = {
                sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        observers = start_observers(self.shares, self.events, self.settings.polling_shares,
                                    self.settings.polling_interval_s)  # fmt: skip
        self.say(f"watching {', '.join(f'{n}={r}' for n, r in self.shares.items())}; "
                 f"sending to {self.app.conf.broker_url.split('@')[-1]}")  # fmt: skip
        next_reconcile = next_requeue = 0.0
        try:
            while not self.stop.is_set():
                drain_events(self.events, self.debouncer, timeout=0.1)
                for share, paths in self.debouncer.due().items():
                    ready = settled(self.shares[share], share, paths, self.debouncer,
                                    self.settings.debounce_s)  # fmt: skip
                    if ready and not self._send(share, ready):
                        next_reconcile = min(next_reconcile, time.monotonic() + _RETRY_S)
                now = time.monotonic()
                if now >= next_reconcile:
                    ok = all([self._send(share, None) for share in self.shares])
                    next_reconcile = now + (self.settings.reconcile_interval_s if ok else _RETRY_S)
                if now >= next_requeue:
                    self._requeue()
                    next_requeue = now + self.settings.requeue_interval_s
        finally:
            for observer in observers:
                observer.stop()
            for observer in observers:
                observer.join(timeout=5)
            self.catalog.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.say("stopped")
        return 0

    def _send(self, share: str, paths: dict[str, float] | None) -> bool:
        """One plan message; False (and a reconcile soon) when the broker cannot be reached."""
        if paths is not None and RESCAN in paths:
            paths = None
        try:
            self.dispatcher.plan(share, paths)
        except Exception as exc:  # the broker is down: a reconcile finds the changes later
            self.say(f"cannot reach the broker ({type(exc).__name__}: {exc}); retrying")
            return False
        return True

    def _requeue(self) -> None:
        try:
            self.requeuer.run_once()
        except Exception as exc:
            self.say(f"requeue check failed ({type(exc).__name__}: {exc}); retrying")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop.set()
