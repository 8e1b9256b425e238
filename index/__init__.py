"""The index: Qdrant schema and writes, the ACL model and filter, the catalog, search."""

from index.acl import Principal, acl_filter

__all__ = ["Principal", "acl_filter"]
