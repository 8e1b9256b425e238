"""The one watch loop, shared by the embedded service (which indexes each change) and the
distributed watcher (which sends each change to the queue).

The shares' watches report changes; each path waits in the debouncer until it is quiet (and
closed after its last write) and its mtime has stood still; then the handler gets it. Every
``reconcile_interval_s`` (and at start, after the watches are on, so that nothing that happens
meanwhile is missed) the handler reconciles whole shares; a step that fails brings the next
reconcile to within ``RETRY_S``. SIGINT and SIGTERM stop the loop after the current step.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, Protocol

from workers.settings import Settings
from workers.sources.base import Change, Source, Watch
from workers.watch.events import Debouncer, drain_events, settled

#: a failed step is tried again, with a reconcile, this much later
RETRY_S = 10.0


class WatchHandler(Protocol):
    def changed(self, share: str, paths: dict[str, float]) -> bool:
        """Settled paths of a share (path -> wall time of the change); False: it failed."""

    def reconcile(self) -> bool:
        """Every share in full; False: it failed."""

    def tick(self) -> bool:
        """Each round of the loop; True: reconcile now (the configuration changed)."""


class WatchLoop:
    def __init__(
        self, sources: Mapping[str, Source], settings: Settings, handler: WatchHandler
    ) -> None:
        self.sources = dict(sources)
        self.settings = settings
        self.handler = handler
        self.events: queue.Queue[Change] = queue.Queue()
        self.debouncer = Debouncer(settings.debounce_s, settings.write_settle_s)
        self.stop = threading.Event()
        self._watches: list[Watch] = []

    def start_watching(self) -> None:
        """Watch every share (before the first reconcile: nothing meanwhile is missed)."""
        polled = set(self.settings.polling_shares)
        for name, source in self.sources.items():
            self._watches.append(
                source.watch(self.events, name in polled, self.settings.polling_interval_s)
            )

    def run(self, handle_signals: bool = True, on_signal: Callable[[], None] | None = None) -> None:
        """Until ``stop`` is set; with ``handle_signals``, SIGINT/SIGTERM call ``on_signal``
        (default: set ``stop``)."""
        previous: dict[int, Any] = {}
        if handle_signals:
            stop = on_signal or self.stop.set

            def handler(signum: int, _frame: FrameType | None) -> None:
                stop()

            previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if not self._watches:
                self.start_watching()
            next_reconcile = 0.0
            while not self.stop.is_set():
                drain_events(self.events, self.debouncer, timeout=0.05)
                for share, paths in self.debouncer.due().items():
                    if self.stop.is_set():
                        break
                    source = self.sources[share]
                    ready = settled(source, paths, self.debouncer, self.settings.debounce_s)
                    if ready and not self.handler.changed(share, ready):
                        next_reconcile = min(next_reconcile, time.monotonic() + RETRY_S)
                if self.handler.tick() or time.monotonic() >= next_reconcile:
                    ok = self.handler.reconcile()
                    wait = self.settings.reconcile_interval_s if ok else RETRY_S
                    next_reconcile = time.monotonic() + wait
        finally:
            self.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def close(self) -> None:
        for watch in self._watches:
            watch.stop()
        for watch in self._watches:
            join = getattr(watch, "join", None)
            if join is not None:
                join(timeout=5)
        self._watches.clear()
