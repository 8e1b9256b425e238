"""Watcher events, debounced: each path waits until it is quiet (and closed after its last
write), so a file is read once, complete. A folder event stands for a reconcile of the share
(``RESCAN``), which finds every file under it by stat alone."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ingest.errors import IngestError
from ingest.paths import BadPath
from workers.sources.base import RESCAN, Change, Source

__all__ = ["RESCAN", "Change", "Debouncer", "drain_events", "settled"]

WRITE = "write"


def drain_events(events: queue.Queue[Change], debouncer: Debouncer, timeout: float) -> None:
    """Move whatever the observers reported into the debouncer (waits up to ``timeout``)."""
    try:
        batch = [events.get(timeout=timeout)]
    except queue.Empty:
        return
    while True:
        try:
            batch.append(events.get_nowait())
        except queue.Empty:
            break
    debouncer.add(batch)


def settled(
    source: Source, paths: dict[str, float], debouncer: Debouncer, debounce_s: float
) -> dict[str, float]:
    """Paths whose mtime has stood still for the debounce delay; the others go back to wait
    (a writer that never closes the file, a polled network share)."""
    now = time.time()
    ready = {}
    for path, first in paths.items():
        if path != RESCAN:
            try:
                entry = source.stat(path)
            except (OSError, IngestError, BadPath):
                entry = None
            age = now - entry.mtime_ns / 1e9 if entry is not None else debounce_s
            if 0 <= age < debounce_s:
                debouncer.rearm(source.name, path, first)
                continue
        ready[path] = first
    return ready


@dataclass
class _Pending:
    first_wall: float
    last: float
    writing: bool


class Debouncer:
    """Holds each path until it is quiet: no event for ``delay`` seconds, and closed after its
    last write (or, for writers that never close and for polled shares, quiet for ``settle``)."""

    def __init__(self, delay: float, settle: float) -> None:
        self.delay = delay
        self.settle = max(settle, delay)
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._lock = threading.Lock()

    def add(self, changes: Iterable[Change]) -> None:
        with self._lock:
            for c in changes:
                key = (c.share, c.path)
                p = self._pending.get(key)
                if p is None:
                    p = self._pending[key] = _Pending(first_wall=c.wall, last=c.at, writing=False)
                p.last = max(p.last, c.at)
                p.writing = c.kind == WRITE  # a close, a move or a delete ends the write

    def rearm(self, share: str, path: str, first_wall: float) -> None:
        """Put a path back: it looked quiet but is still changing."""
        with self._lock:
            self._pending[(share, path)] = _Pending(first_wall, time.monotonic(), writing=False)

    def due(self, now: float | None = None) -> dict[str, dict[str, float]]:
        """Quiet paths by share, each with the wall time of its first change; they leave."""
        now = time.monotonic() if now is None else now
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for key, p in list(self._pending.items()):
                quiet = now - p.last
                if quiet >= self.delay and (not p.writing or quiet >= self.settle):
                    del self._pending[key]
                    out.setdefault(key[0], {})[key[1]] = p.first_wall
        return out

    def __len__(self) -> int:
        return len(self._pending)
