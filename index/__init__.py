"""The index: Qdrant schema and writes, the ACL model and filter, the catalog, search.

``from index import Principal, acl_filter`` is what a downstream app needs; both load on first
use, so that a process that only uses the content cache (a parse process) never imports the
Qdrant client (0.7 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from index.acl import Principal, acl_filter

__all__ = ["Principal", "acl_filter"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from index import acl

        return getattr(acl, name)
    raise AttributeError(f"module 'index' has no attribute {name!r}")
