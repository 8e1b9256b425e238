"""The one filter every query path applies (query side): what a principal may read, as a Qdrant
filter. The only module of the permissions that imports the Qdrant client."""

from __future__ import annotations

from collections.abc import Sequence

from qdrant_client import models

from index.permissions.readers import Principal, acl_clauses


def acl_filter(principal: Principal, shares: Sequence[str] = ()) -> models.Filter:
    """The Qdrant filter for what ``principal`` may read (``shares``: in these shares only).
    Every query path must use it."""
    must, must_not = acl_clauses(principal)
    if shares:
        must = [*must, ("metadata.share", list(shares))]
    return models.Filter(
        must=[models.FieldCondition(key=key, match=models.MatchAny(any=t)) for key, t in must],
        must_not=[models.FieldCondition(key=key, match=models.MatchAny(any=t)) for key, t in must_not],
    )
