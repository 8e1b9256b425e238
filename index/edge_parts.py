"""Qdrant Edge's side of what the embedded index shares with a Qdrant server: its filters (the ACL
filter from its one definition, ``index.permissions.readers.acl_clauses``; qdrant-client is
never imported here: 1.5-2.5 s that every command starting the embedded index would pay), and
the background optimizer that builds the HNSW index once enough points wait for it and writes
have paused."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import qdrant_edge as qe

from index.permissions.readers import Principal, acl_clauses

if TYPE_CHECKING:
    from index.edge import EdgeIndex

log = logging.getLogger(__name__)


def match(key: str, value: str | int) -> Any:
    return qe.FieldCondition(key, match=qe.MatchValue(value))


def all_of(*conditions: Any) -> Any:
    return qe.Filter(must=list(conditions))


def acl_edge_filter(principal: Principal, shares: Sequence[str] = ()) -> Any:
    """The ACL filter (``index.permissions.readers.acl_clauses``, its one definition) as Edge's;
    ``shares``: only these shares' points."""
    must, must_not = acl_clauses(principal)
    if shares:
        must = [*must, ("metadata.share", list(shares))]
    return qe.Filter(
        must=[qe.FieldCondition(key, match=qe.MatchAny(list(t))) for key, t in must],
        must_not=[qe.FieldCondition(key, match=qe.MatchAny(list(t))) for key, t in must_not],
    )


class Optimizer:
    """Runs ``optimize`` on its own thread once ``after`` points wait for an index and no write
    came for ``idle_s`` seconds (the end of a batch, an idle service)."""

    def __init__(self, index: EdgeIndex, after: int, idle_s: float) -> None:
        self.index = index
        self.after = after
        self.idle_s = idle_s
        self.pending = 0
        self._last_write = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def added(self, n: int) -> None:
        with self._lock:  # writers on several threads start one optimizer thread, not two
            self.pending += n
            if self.after > 0 and self.pending >= self.after and self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="index-optimizer", daemon=True
                )
                self._thread.start()

    def wrote(self) -> None:
        self._last_write = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            quiet = time.monotonic() - self._last_write
            if self.pending >= self.after and quiet >= self.idle_s:
                self.pending = 0
                try:
                    self.index.optimize()
                    self.runs += 1
                except Exception:  # the index stays searchable by brute force; tried again later
                    log.exception("optimizing the index failed")
                continue
            self._wake.wait(max(0.5, self.idle_s - quiet))
            self._wake.clear()
