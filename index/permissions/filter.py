"""The one filter every query path applies (query side): what a principal may read, as a Qdrant
filter. The only module of the permissions that imports the Qdrant client."""

from __future__ import annotations

from qdrant_client import models

from index.permissions.readers import Principal, acl_clauses


def acl_filter(principal: Principal) -> models.Filter:
    """The Qdrant filter for what ``principal`` may read. Every query path must use it."""
    must, must_not = acl_clauses(principal)
    return models.Filter(
        must=[models.FieldCondition(key=key, match=models.MatchAny(any=t)) for key, t in must],
        must_not=[models.FieldCondition(key=key, match=models.MatchAny(any=t)) for key, t in must_not],
    )
