"""Content cache: OCR and VLM results keyed by what was looked at, not by which file held it.

The key is a hash of the image (or rendered page) bytes plus the engine, model and prompt
version, so an edited document re-reads only its changed images, and a retried task or a moved
file reads none again. ``index.cache.SqlContentCache`` is the shared implementation; a cache is an
optimisation, so implementations swallow their own outages (a miss, not an error).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Protocol


class ContentCache(Protocol):
    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...


def content_key(kind: str, data: bytes, model: str, version: str) -> str:
    """``kind:sha256``: kind first, so a store can tell OCR text from captions by the key alone."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(data).digest())
    for part in (kind, model, version):
        digest.update(b"\x00" + part.encode("utf-8"))
    return f"{kind}:{digest.hexdigest()}"


def key_kind(key: str) -> str:
    return key.split(":", 1)[0]


class MemoryCache:
    """A process-local cache for tests and one-off runs; counts hits to show work was saved."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._values.get(key)
            self.hits += value is not None
            return value

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._values.setdefault(key, value)  # like the SQL store: the first answer stays

    def __len__(self) -> int:
        return len(self._values)
