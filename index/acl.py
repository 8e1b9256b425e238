"""Access control: principals as prefixed tokens, and the one filter every query path applies.

A point carries ``metadata.acl`` (tokens allowed to read it) and ``metadata.acl_deny`` (tokens
denied by rules). A principal may read a point when one of its tokens is allowed and none is
denied. A point with an empty ``acl`` is readable by nobody: an unreadable ACL denies.
"""

from __future__ import annotations

import grp
import pwd
import stat
from dataclasses import dataclass, field

from qdrant_client import models

EVERYONE = "everyone"


@dataclass(frozen=True)
class Principal:
    """Who is asking. No user and no groups: an anonymous caller, who only sees public documents."""

    user: str | None = None
    groups: tuple[str, ...] = field(default=())

    def tokens(self) -> list[str]:
        out = [EVERYONE]
        if self.user:
            out.append(f"user:{self.user}")
        out.extend(f"group:{g}" for g in self.groups)
        return out


def acl_filter(principal: Principal) -> models.Filter:
    """The Qdrant filter for what ``principal`` may read. Every query path must use it."""
    tokens = principal.tokens()
    return models.Filter(
        must=[models.FieldCondition(key="metadata.acl", match=models.MatchAny(any=tokens))],
        must_not=[
            models.FieldCondition(key="metadata.acl_deny", match=models.MatchAny(any=tokens))
        ],
    )


def user_token(uid: int) -> str:
    try:
        return f"user:{pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid:{uid}"


def group_token(gid: int) -> str:
    try:
        return f"group:{grp.getgrgid(gid).gr_name}"
    except KeyError:
        return f"gid:{gid}"


def acl_from_mode(uid: int, gid: int, mode: int) -> list[str]:
    """Readers of a file by its POSIX owner, group and mode bits."""
    tokens = []
    if mode & stat.S_IRUSR:
        tokens.append(user_token(uid))
    if mode & stat.S_IRGRP:
        tokens.append(group_token(gid))
    if mode & stat.S_IROTH:
        tokens.append(EVERYONE)
    return tokens
