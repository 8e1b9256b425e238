"""watchdog events -> share-relative paths, debounced.

File events name the paths to look at again; directory events (a folder created, moved or
deleted) ask for a reconcile of the share, which finds every file under it by stat alone.
Reads (opened, closed without writing) are ignored, so a worker reading the share never
triggers itself.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from watchdog.events import (
    FileClosedNoWriteEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

RESCAN = ""  # the path that stands for "reconcile the whole share"


@dataclass(frozen=True)
class Change:
    share: str
    path: str  # relative to the share root; RESCAN for the whole share
    at: float  # monotonic time of the event


class ShareEventHandler(FileSystemEventHandler):
    def __init__(self, share: str, root: str, out: queue.Queue[Change]) -> None:
        self.share = share
        self.root = os.path.realpath(root)
        self.out = out

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileOpenedEvent | FileClosedNoWriteEvent):
            return
        now = time.monotonic()
        if event.is_directory:
            if event.event_type in ("created", "moved", "deleted"):
                self.out.put(Change(self.share, RESCAN, now))
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            rel = self._relative(raw)
            if rel:
                self.out.put(Change(self.share, rel, now))

    def _relative(self, raw: str | bytes) -> str | None:
        path = os.fsdecode(raw)
        if not path:
            return None
        rel = os.path.relpath(path, self.root)
        if rel.startswith("..") or rel == ".":
            return None
        return rel.replace(os.sep, "/")


def start_observer(
    shares: dict[str, str], out: queue.Queue[Change], polling: bool = False
) -> BaseObserver:
    observer: BaseObserver = PollingObserver(timeout=1) if polling else Observer()
    for share, root in shares.items():
        observer.schedule(
            ShareEventHandler(share, root, out), os.path.realpath(root), recursive=True
        )
    observer.start()
    return observer


class Debouncer:
    """Holds each path until no event for it has arrived for ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def add(self, changes: Iterable[Change]) -> None:
        with self._lock:
            for change in changes:
                self._last[(change.share, change.path)] = change.at

    def due(self, now: float | None = None) -> dict[str, list[str]]:
        """Paths quiet for long enough, by share; they leave the debouncer."""
        now = time.monotonic() if now is None else now
        out: dict[str, list[str]] = {}
        with self._lock:
            for key, at in list(self._last.items()):
                if now - at >= self.delay:
                    del self._last[key]
                    out.setdefault(key[0], []).append(key[1])
        return out

    def __len__(self) -> int:
        return len(self._last)
