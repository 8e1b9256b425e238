"""Two lanes in the embedded service, so that a small, recent change never waits behind a large
document or a bulk arrival.

- The live lane is the watch loop's thread: the small documents of an event (or of a reconcile
  that found a few) are parsed, embedded and written right there, in a parse process of their
  own.
- The bulk lane is a thread with a parse process of its own and a queue: large documents
  (``large_document_mb`` and up: parsed in parts, written in slices), messages and archives, and
  any pass with more than ``live_max_files`` documents (a copied folder, the first sync of a
  share). Between two slices, and between two batches, it waits while the live lane works, so
  the live lane has the model and the cores to itself; it still moves a slice at a time.

Both write through the same versioned writer; the catalog holds every queued document as
pending (a crash loses nothing: the next reconcile queues it again). A document queued in bulk
that changes again and is small goes live and leaves the bulk queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ingest.stages.members import is_container
from workers.sync.processor import DocumentProcessor
from workers.sync.report import SyncReport
from workers.sync.work import WorkItem

log = logging.getLogger(__name__)

#: documents of one pass that still go live; more is a bulk arrival
LIVE_MAX_FILES = 32
#: small bulk documents processed per step (the live lane goes first between steps)
_BULK_STEP = 16
#: sizes the backlog is counted by, in bytes (upper bounds; the last class is open)
_SIZE_CLASSES = ((64 << 10, "<64KB"), (1 << 20, "64KB-1MB"), (16 << 20, "1-16MB"))


def size_class(size: int) -> str:
    for bound, name in _SIZE_CLASSES:
        if size < bound:
            return name
    return ">=16MB"


class LiveGate:
    """Shut while the live lane works: the bulk lane waits at its next slice or step (``wait``
    is the bulk processor's pause), so the live lane has the model and the cores to itself."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        #: set: waiting ends (the service stops)
        self.stop = threading.Event()

    @contextmanager
    def live(self) -> Iterator[None]:
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    def wait(self) -> None:
        while not self._open.wait(0.1) and not self.stop.is_set():
            pass


class BulkLane:
    def __init__(
        self, processor: DocumentProcessor, gate: LiveGate, say: Callable[[str], object] = print
    ) -> None:
        #: a processor of its own (its own parse process), pausing at ``gate``
        self.processor = processor
        self.gate = gate
        self.say = say
        self._queue: OrderedDict[str, tuple[WorkItem, float]] = OrderedDict()
        self._current: dict[str, WorkItem] = {}
        self._cond = threading.Condition()
        self.stop = gate.stop
        self._thread = threading.Thread(target=self._run, name="bulk-lane", daemon=True)

    # -- the service's side -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 30) -> None:
        self.stop.set()
        self.processor.stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, items: Iterable[WorkItem]) -> None:
        """Queue documents (a newer plan of a queued document replaces it)."""
        now = time.monotonic()
        with self._cond:
            for item in items:
                current = self._current.get(item.doc_id)
                if current is not None and _same_file(current, item):
                    continue  # being processed as it is now
                queued = self._queue.pop(item.doc_id, None)
                self._queue[item.doc_id] = (item, queued[1] if queued else now)
            self._cond.notify_all()

    def discard(self, doc_ids: Iterable[str]) -> None:
        """These documents go live: not processed again here."""
        with self._cond:
            for doc_id in doc_ids:
                self._queue.pop(doc_id, None)

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._current

    def load(self) -> int:
        """Documents waiting or in progress."""
        with self._cond:
            return len(self._queue) + len(self._current)

    def backlog(self) -> dict[str, Any]:
        """What waits (by size class), and the age of the oldest waiting document."""
        now = time.monotonic()
        with self._cond:
            waiting = list(self._queue.values())
            running = len(self._current)
        by_size: dict[str, dict[str, int]] = {}
        for item, _ in waiting:
            entry = by_size.setdefault(size_class(item.entry.size), {"documents": 0, "bytes": 0})
            entry["documents"] += 1
            entry["bytes"] += item.entry.size
        oldest = max((now - at for _, at in waiting), default=0.0)
        return {
            "documents": len(waiting),
            "bytes": sum(item.entry.size for item, _ in waiting),
            "by_size": by_size,
            "oldest_waiting_s": round(oldest, 1),
            "in_progress": running,
        }

    # -- the lane's thread ----------------------------------------------------------------------
    def _take(self) -> list[WorkItem]:
        """The next step: one large document, or up to _BULK_STEP small ones of one share."""
        with self._cond:
            while not self._queue and not self.stop.is_set():
                self._cond.wait(0.5)
            if self.stop.is_set():
                return []
            first, _ = next(iter(self._queue.values()))
            if self.processor.is_large(first):
                step = [first]
            else:
                step = [
                    item
                    for item, _ in self._queue.values()
                    if item.share == first.share and not self.processor.is_large(item)
                ][:_BULK_STEP]
            for item in step:
                del self._queue[item.doc_id]
                self._current[item.doc_id] = item
            return step

    def _run(self) -> None:
        while not self.stop.is_set():
            step = self._take()
            if not step:
                continue
            self.gate.wait()
            report = SyncReport()
            try:
                self.processor.process(step, report, step[0].share)
            except Exception as exc:  # the catalog holds them pending: a reconcile retries
                log.exception("bulk indexing step failed")
                self.say(f"bulk indexing step failed ({type(exc).__name__}: {exc}); "
                         "its documents stay pending for the next reconcile")  # fmt: skip
            finally:
                with self._cond:
                    for item in step:
                        self._current.pop(item.doc_id, None)
            say_changes(self.say, f"{step[0].share} (bulk)", report)


class LaneRouter:
    """The planner's sink in the service: small documents live, the rest to the bulk lane."""

    def __init__(
        self, live: DocumentProcessor, bulk: BulkLane, gate: LiveGate,
        live_max_files: int = LIVE_MAX_FILES,
    ) -> None:  # fmt: skip
        self.live = live
        self.bulk = bulk
        self.gate = gate
        self.live_max_files = live_max_files

    def __call__(self, work: list[WorkItem], report: SyncReport, share: str) -> None:
        small = [i for i in work if not self.live.is_large(i) and not is_container(i.entry.path)]
        if len(small) > self.live_max_files:
            small = []  # a bulk arrival: it must not hold up the next edit
        backlog = self.bulk.load()
        for item in work:
            item.backlog = backlog
        chosen = {id(i) for i in small}
        self.bulk.submit(i for i in work if id(i) not in chosen)
        if not small:
            return
        self.bulk.discard(i.doc_id for i in small)
        with self.gate.live():
            self.live.process(small, report, share)


def _same_file(a: WorkItem, b: WorkItem) -> bool:
    """The same bytes and the same readers (a permission change is planned again)."""
    return (a.entry.size, a.entry.mtime_ns, a.access.as_lists(), a.acl_note) == (
        b.entry.size, b.entry.mtime_ns, b.access.as_lists(), b.acl_note,
    )  # fmt: skip


def say_changes(say: Callable[[str], object], where: str, report: SyncReport) -> None:
    changes = {k: n for k, n in report.to_dict()["documents"].items() if n and k != "unchanged"}
    if changes:
        say(f"{where}: " + ", ".join(f"{n} {k}" for k, n in changes.items()))
