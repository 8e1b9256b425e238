"""watchdog events -> share-relative paths, debounced.

File events name the paths to look at again; directory events (a folder created, moved, deleted,
or its permissions changed) ask for a reconcile of the share, which finds every file under it by
stat alone and rewrites the ACL of those whose readers changed.
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

from ingest import sharefs
from ingest.errors import IngestError
from ingest.paths import BadPath, from_os

RESCAN = ""  # the path that stands for "reconcile the whole share"

WRITE, CLOSE, OTHER = "write", "close", "other"


@dataclass(frozen=True)
class Change:
    share: str
    path: str  # relative to the share root, text form (ingest.paths); RESCAN for the whole share
    at: float  # monotonic time of the event
    wall: float  # wall-clock time of the event (what freshness is measured from)
    kind: str = OTHER  # WRITE: created or modified; CLOSE: closed after writing


class ShareEventHandler(FileSystemEventHandler):
    def __init__(self, share: str, root: str, out: queue.Queue[Change]) -> None:
        self.share = share
        self.root = os.path.realpath(root)
        self.out = out

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileOpenedEvent | FileClosedNoWriteEvent):
            return
        now, wall = time.monotonic(), time.time()
        if event.is_directory:
            # created, moved, deleted: files appear or vanish below; attrib: a chmod, chown or
            # setfacl changes who can traverse it, so who can read every file below
            if event.event_type in ("created", "moved", "deleted", "attrib"):
                self.out.put(Change(self.share, RESCAN, now, wall))
            return
        kind = {"created": WRITE, "modified": WRITE, "closed": CLOSE}.get(event.event_type, OTHER)
        rel = self._relative(event.src_path)
        if rel:
            self.out.put(Change(self.share, rel, now, wall, kind))
        dest = self._relative(getattr(event, "dest_path", ""))
        if dest:  # the new name of a moved file is complete: it was written under the old one
            self.out.put(Change(self.share, dest, now, wall, CLOSE))

    def _relative(self, raw: str | bytes) -> str | None:
        path = os.fsdecode(raw)
        if not path:
            return None
        rel = os.path.relpath(path, self.root)
        if rel.startswith("..") or rel == ".":
            return None
        return from_os(rel.replace(os.sep, "/"))


def start_observers(
    shares: dict[str, str],
    out: queue.Queue[Change],
    polling: Iterable[str] = (),
    interval: float = 1.0,
) -> list[BaseObserver]:
    """inotify for local disks; a polling observer for the shares named in ``polling`` (network
    mounts deliver no inotify events for writes made on other machines)."""
    polled = set(polling)
    native: BaseObserver = Observer()
    poller: BaseObserver = PollingObserver(timeout=interval)
    for share, root in shares.items():
        observer = poller if share in polled else native
        observer.schedule(
            ShareEventHandler(share, root, out), os.path.realpath(root), recursive=True
        )
    observers = [o for o in (native, poller) if o.emitters]
    for observer in observers:
        observer.start()
    return observers


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
    root: str, share: str, paths: dict[str, float], debouncer: Debouncer, debounce_s: float
) -> dict[str, float]:
    """Paths whose mtime has stood still for the debounce delay; the others go back to wait
    (a writer that never closes the file, a polled network share)."""
    now = time.time()
    ready = {}
    for path, first in paths.items():
        if path != RESCAN:
            try:
                age = now - sharefs.lstat(root, path).st_mtime
            except (OSError, IngestError, BadPath):
                age = debounce_s  # gone: nothing to wait for
            if 0 <= age < debounce_s:
                debouncer.rearm(share, path, first)
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
