"""The index: Qdrant schema and writes, the ACL model and filter, the catalog, search.

``from index import Principal, acl_filter`` is what a downstream app needs; both load on first
use, so that a process that only uses the content cache (a parse process) never imports the
Qdrant client (0.7 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from index.permissions.filter import acl_filter
    from index.permissions.readers import Principal

__all__ = ["Principal", "acl_filter"]


def __getattr__(name: str) -> Any:
    # on first use: a parse process that only uses the content cache never imports Qdrant's client
    if name == "Principal":
        from index.permissions.readers import Principal

        return Principal
    if name == "acl_filter":
        from index.permissions.filter import acl_filter

        return acl_filter
    raise AttributeError(f"module 'index' has no attribute {name!r}")
