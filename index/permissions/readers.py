"""Who may read, as the index stores it and as a query asks: tokens, principals, the two layers.

A point carries two layers of readers, each as allowed and denied tokens: the file's own
(``metadata.acl``, ``metadata.acl_deny``: its POSIX or NTFS permissions with the share rules)
and its share's (``metadata.share_acl``, ``metadata.share_acl_deny``: a Windows share's own
permissions; ``everyone`` for a local folder). A principal may read a point when, in each layer,
one of its tokens is allowed and none is denied: Windows grants a file over a share only where
the share permissions and the NTFS permissions both allow it. An empty ``acl`` or ``share_acl``
is readable by nobody: an unreadable ACL denies.

Tokens: ``user:NAME``, ``group:NAME``, ``everyone`` (``uid:N``/``gid:N`` when no name is known)
for POSIX shares; ``sid:S-1-...`` for SMB shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from index.permissions.names import Directory

EVERYONE = "everyone"
READ, WRITE, EXECUTE = 4, 2, 1


@dataclass(frozen=True)
class Principal:
    """Who is asking. No user and no groups: an anonymous caller, who only sees public documents."""

    user: str | None = None
    groups: tuple[str, ...] = field(default=())
    #: Windows identities (from the directory): the user's SID and all its groups' SIDs
    sids: tuple[str, ...] = field(default=())

    def tokens(self) -> list[str]:
        out = [EVERYONE]
        if self.user:
            out.append(f"user:{self.user}")
        out.extend(f"group:{g}" for g in self.groups)
        out.extend(f"sid:{s}" for s in self.sids)
        return out


#: the payload fields of the two layers: (allowed, denied) of the file, then of its share
LAYERS = (("metadata.acl", "metadata.acl_deny"), ("metadata.share_acl", "metadata.share_acl_deny"))

#: a payload field and the tokens any of which it must (or must not) hold
Clause = tuple[str, list[str]]


def acl_clauses(principal: Principal) -> tuple[list[Clause], list[Clause]]:
    """The ACL filter's one definition, as (must, must_not) clauses: in each layer, one of the
    principal's tokens allowed and none denied. ``filter.acl_filter`` builds Qdrant's filter from
    it (servers, downstream apps), ``index.edge_parts.acl_edge_filter`` the embedded index's."""
    tokens = principal.tokens()
    return [(allow, tokens) for allow, _ in LAYERS], [(deny, tokens) for _, deny in LAYERS]


def may_read(
    principal: Principal, acl: Iterable[str], acl_deny: Iterable[str],
    share: Access | None = None,
) -> bool:  # fmt: skip
    """What ``acl_filter`` decides, for one document's tokens (``share``: its share's layer;
    None: a share that restricts nobody)."""
    tokens = set(principal.tokens())
    if share is not None and (not tokens & share.allow or tokens & share.deny):
        return False
    return bool(tokens & set(acl)) and not tokens & set(acl_deny)



@dataclass(frozen=True)
class Access:
    """Allowed and denied tokens, in the sense of ``may_read``."""

    allow: frozenset[str]
    deny: frozenset[str] = frozenset()

    def as_lists(self) -> tuple[list[str], list[str]]:
        return sorted(self.allow), sorted(self.deny)


NOBODY = Access(frozenset())
#: a share layer that restricts nobody (a local folder; a share read with NTFS alone)
OPEN = Access(frozenset({EVERYONE}))


@dataclass(frozen=True)
class ShareAccess:
    """Who a share itself admits, before any file's permissions: the share layer of readers."""

    access: Access
    #: where it comes from: "server" (the file server's share permissions), "config"
    #: (share_permissions), "local" (a local folder: no share layer), "unknown"
    origin: str
    #: why the share's permissions are unknown, and what to grant (a warning for operators)
    warning: str | None = None



def intersect(a: Access, b: Access, names: Directory) -> Access:
    """Who passes both checks. Group-and-group combinations expand to the users known to be in both."""
    return Access(intersect_allow(a.allow, b.allow, names), a.deny | b.deny)


def intersect_allow(a: frozenset[str], b: frozenset[str], names: Directory) -> frozenset[str]:
    if EVERYONE in a:
        return b
    if EVERYONE in b:
        return a
    out = set(a & b)
    for side, other in ((a, b), (b, a)):
        other_groups = {t[6:] for t in other if t.startswith("group:")}
        for token in side - out:
            if token.startswith("user:") and names.groups_of(token[5:]) & other_groups:
                out.add(token)
    groups_a = {t[6:] for t in a if t.startswith("group:")}
    groups_b = {t[6:] for t in b if t.startswith("group:")}
    for ga in groups_a - groups_b:
        for gb in groups_b - groups_a:
            out.update(f"user:{u}" for u in names.members(ga) & names.members(gb))
    return frozenset(out)

