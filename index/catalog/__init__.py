"""The catalog: the durable record of every document, what it should look like in the index.

SQLAlchemy; SQLite in the data dir by default, PostgreSQL by URL. The queue and the watcher are
only transport: what is ``pending`` here is what still has to reach the index.

Its parts: ``documents`` (where each file is, its status and readers), ``versions`` (version
numbers and the compare-and-set that orders writers), ``leases`` (the distributed mode's
dispatch tokens and worker leases), ``staging`` (parse results waiting for the embed step),
``freshness`` (seconds from a change to searchable). ``protocols`` says what each offers.
"""

from __future__ import annotations

from index.catalog.base import CatalogDamaged, CatalogError
from index.catalog.documents import DocumentTable
from index.catalog.freshness import FreshnessLog
from index.catalog.leases import LeaseBook
from index.catalog.protocols import Catalog, Documents, Freshness, Leases, Staging, Versions
from index.catalog.shares import ShareBook, ShareReaders, ShareState
from index.catalog.staging import StagingArea
from index.catalog.tables import (
    DELETED,
    FAILED,
    INDEXED,
    PENDING,
    SKIPPED,
    STATUSES,
    DocumentRecord,
    VersionRow,
)
from index.catalog.versions import VersionLedger

__all__ = [
    "DELETED", "FAILED", "INDEXED", "PENDING", "SKIPPED", "STATUSES",
    "Catalog", "CatalogDamaged", "CatalogError", "DocumentRecord", "Documents", "Freshness", "Leases",
    "ShareReaders", "ShareState", "SqlCatalog", "Staging", "VersionRow", "Versions",
]  # fmt: skip


class SqlCatalog(DocumentTable, VersionLedger, LeaseBook, StagingArea, FreshnessLog, ShareBook):
    """The catalog on SQLAlchemy: every part, one database."""
