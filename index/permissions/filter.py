"""The one filter every query path applies (query side): what a principal may read, as a Qdrant
filter. The only module of the permissions that imports the Qdrant client."""

from __future__ import annotations

from qdrant_client import models

from index.permissions.readers import LAYERS, Principal


def acl_filter(principal: Principal) -> models.Filter:
    """The Qdrant filter for what ``principal`` may read. Every query path must use it."""
    tokens = principal.tokens()
    return models.Filter(
        must=[models.FieldCondition(key=allow, match=models.MatchAny(any=tokens))
              for allow, _ in LAYERS],
        must_not=[models.FieldCondition(key=deny, match=models.MatchAny(any=tokens))
                  for _, deny in LAYERS],
    )  # fmt: skip

