"""Which errors are outages (the index, the catalog, the broker or the VLM unreachable or busy):
retried later, never recorded on a document as its fault."""

from __future__ import annotations

import sqlite3

from index.vectors import IndexUnavailable
from ingest.errors import TransientError


def is_transient(exc: BaseException) -> bool:
    """An outage, worth retrying: not a property of the document."""
    if isinstance(exc, TransientError | IndexUnavailable | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, sqlite3.OperationalError):  # locked / busy database
        return True
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("sqlalchemy") and name in ("OperationalError", "TimeoutError"):
        return True
    if module.startswith(("httpx", "httpcore")) or name == "ResponseHandlingException":
        return True
    if name == "UnexpectedResponse":  # qdrant-client: 5xx is the server's trouble, 4xx ours
        return int(getattr(exc, "status_code", 0) or 0) >= 500
    return module.startswith(("redis", "kombu"))
