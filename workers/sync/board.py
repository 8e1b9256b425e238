"""What is in flight, for ``status``: each large document being written in slices (chunks done
of its total, its rate) and, in the embedded service, the bulk work waiting behind the live
lane. Thread-safe: the indexing threads write it, the query API's /status reads it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ingest.paths import display


@dataclass
class LargeDocument:
    share: str
    path: str
    size: int
    started: float = field(default_factory=time.monotonic)
    chunks_done: int = 0
    #: exact once the whole document is parsed; estimated from the parts read so far before
    chunks_total: int = 0
    estimated: bool = True
    bytes_read: int = 0

    def to_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.chunks_done / elapsed
        left = max(self.chunks_total - self.chunks_done, 0)
        return {
            "share": self.share,
            "path": self.path,
            "display_path": display(self.path),
            "bytes": self.size,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "chunks_total_estimated": self.estimated,
            "chunks_per_s": round(rate, 1),
            "eta_s": round(left / rate, 1) if rate > 0 else None,
            "running_s": round(elapsed, 1),
        }


class WorkBoard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._large: dict[str, LargeDocument] = {}

    def start(self, doc_id: str, share: str, path: str, size: int) -> LargeDocument:
        entry = LargeDocument(share, path, size)
        with self._lock:
            self._large[doc_id] = entry
        return entry

    def advance(
        self, doc_id: str, done: int, total: int, estimated: bool, bytes_read: int = 0
    ) -> None:
        with self._lock:
            entry = self._large.get(doc_id)
            if entry is not None:
                entry.chunks_done, entry.chunks_total = done, max(total, done)
                entry.estimated, entry.bytes_read = estimated, bytes_read

    def finish(self, doc_id: str) -> None:
        with self._lock:
            self._large.pop(doc_id, None)

    def large(self) -> list[dict[str, Any]]:
        with self._lock:
            return [entry.to_dict() for entry in self._large.values()]

    def line(self, doc_id: str) -> str:
        """A progress-bar postfix: the large document and how far it is."""
        with self._lock:
            entry = self._large.get(doc_id)
            if entry is None:
                return ""
            d = entry.to_dict()
        approx = "~" if d["chunks_total_estimated"] else ""
        name = d["display_path"].rsplit("/", 1)[-1]
        return f"{name}: {d['chunks_done']}/{approx}{d['chunks_total']} chunks, {d['chunks_per_s']:g}/s"
