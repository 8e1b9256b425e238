"""``shareindex watch``: the distributed mode's watcher. Watches the shares, sends each settled
change to the cpu queue as a plan, plans every share in full at start and every
``reconcile_interval_s``, and dispatches again the documents whose lease ran out (Requeuer).

It never opens the index: with Qdrant in local mode the worker holds it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from index.permissions.rules import RuleBook
from workers.components import open_catalog
from workers.distributed.app import make_celery
from workers.distributed.dispatch import Dispatcher, Requeuer, queued_messages
from workers.settings import Settings
from workers.sources import open_sources
from workers.sources.base import RESCAN
from workers.watch.loop import WatchLoop

log = logging.getLogger(__name__)


class WatchService:
    def __init__(self, settings: Settings, say: Any = print) -> None:
        self.settings = settings
        self.say = say
        self.app = make_celery(settings)
        self.catalog = open_catalog(settings)
        self.dispatcher = Dispatcher(self.app, self.catalog, settings)
        self.requeuer = Requeuer(self.catalog, self.dispatcher,
                                 lambda: queued_messages(self.app), settings.requeue_after_s)  # fmt: skip
        self.loop = WatchLoop(open_sources(settings, RuleBook(settings.rules())), settings, self)
        self._next_requeue = 0.0

    def run(self, handle_signals: bool = True) -> int:
        self.loop.start_watching()
        shares = ", ".join(f"{n}={s.location}" for n, s in self.loop.sources.items())
        self.say(f"watching {shares}; sending to {self.app.conf.broker_url.split('@')[-1]}")
        try:
            self.loop.run(handle_signals)
        finally:
            self.catalog.close()
        self.say("stopped")
        return 0

    # -- the watch loop's handler ---------------------------------------------------------------
    def changed(self, share: str, paths: dict[str, float]) -> bool:
        return self._send(share, None if RESCAN in paths else paths)

    def reconcile(self) -> bool:
        return all([self._send(share, None) for share in self.loop.sources])

    def tick(self) -> bool:
        now = time.monotonic()
        if now >= self._next_requeue:
            self._requeue()
            self._next_requeue = now + self.settings.requeue_interval_s
        return False

    def _send(self, share: str, paths: dict[str, float] | None) -> bool:
        """One plan message; False (and a reconcile soon) when the broker cannot be reached."""
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
