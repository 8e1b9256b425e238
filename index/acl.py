"""Access control: principals as prefixed tokens, and the one filter every query path applies.

A point carries two layers of readers, each as allowed and denied tokens: the file's own
(``metadata.acl``, ``metadata.acl_deny``: its POSIX or NTFS permissions with the share rules)
and its share's (``metadata.share_acl``, ``metadata.share_acl_deny``: a Windows share's own
permissions; ``everyone`` for a local folder). A principal may read a point when, in each layer,
one of its tokens is allowed and none is denied: Windows grants a file over a share only where
the share permissions and the NTFS permissions both allow it. An empty ``acl`` or ``share_acl``
is readable by nobody: an unreadable ACL denies.

Tokens come from the filesystem (``document_access``): the POSIX access check of the file for
reading, intersected with the check of every directory from the share root down for traversing,
then the share rules of the configuration in their order. The encoding is sound (it never lets
through a principal the POSIX check refuses) and exact except for two rare mixes, where it denies:
a user whose own entry grants read but who is in a group whose entry does not while "other" may
read; and a user in two groups of which only one grants read while "other" may read.
"""

from __future__ import annotations

import fnmatch
import grp
import pwd
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from qdrant_client import models

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


def acl_filter(principal: Principal) -> models.Filter:
    """The Qdrant filter for what ``principal`` may read. Every query path must use it."""
    tokens = principal.tokens()
    return models.Filter(
        must=[models.FieldCondition(key=allow, match=models.MatchAny(any=tokens))
              for allow, _ in LAYERS],
        must_not=[models.FieldCondition(key=deny, match=models.MatchAny(any=tokens))
                  for _, deny in LAYERS],
    )  # fmt: skip


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


# -- names ------------------------------------------------------------------------------------
class Directory(Protocol):
    """The user and group database."""

    def user_token(self, uid: int) -> str: ...

    def group_token(self, gid: int) -> str: ...

    def uid(self, user: str) -> int | None: ...

    def gid(self, group: str) -> int | None: ...

    def groups_of(self, user: str) -> frozenset[str]:
        """Names of the groups ``user`` belongs to, the primary group included."""
        ...

    def members(self, group: str) -> frozenset[str]:
        """Names of the users in ``group``, those with it as primary group included."""
        ...


class SystemDirectory:
    """The system's databases (``pwd``, ``grp``: /etc/passwd, /etc/group, or NSS)."""

    def user_token(self, uid: int) -> str:
        name = _user_name(uid)
        return f"user:{name}" if name else f"uid:{uid}"

    def group_token(self, gid: int) -> str:
        name = _group_name(gid)
        return f"group:{name}" if name else f"gid:{gid}"

    def uid(self, user: str) -> int | None:
        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            return None

    def gid(self, group: str) -> int | None:
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            return None

    def groups_of(self, user: str) -> frozenset[str]:
        return _groups_of(user)

    def members(self, group: str) -> frozenset[str]:
        return _members(group)


@lru_cache(maxsize=4096)
def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def _groups_of(user: str) -> frozenset[str]:
    names = {g.gr_name for g in grp.getgrall() if user in g.gr_mem}
    try:
        primary = _group_name(pwd.getpwnam(user).pw_gid)
    except KeyError:
        primary = None
    return frozenset(names | ({primary} if primary else set()))


@lru_cache(maxsize=4096)
def _members(group: str) -> frozenset[str]:
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return frozenset()
    primary = {p.pw_name for p in pwd.getpwall() if p.pw_gid == entry.gr_gid}
    return frozenset(set(entry.gr_mem) | primary)


def clear_name_caches() -> None:
    """Forget cached names (after the user or group database changed)."""
    for cached in (_user_name, _group_name, _groups_of, _members):
        cached.cache_clear()


# -- what the filesystem says ------------------------------------------------------------------
_ACL_TAGS = {
    0x01: "user_obj",
    0x02: "user",
    0x04: "group_obj",
    0x08: "group",
    0x10: "mask",
    0x20: "other",
}


@dataclass(frozen=True)
class AclEntry:
    tag: str  # user_obj, user, group_obj, group, mask, other
    perm: int
    id: int | None = None


@dataclass(frozen=True)
class FileAccess:
    """Owner, group, mode bits and POSIX ACL entries of one file or directory."""

    uid: int
    gid: int
    mode: int
    acl: tuple[AclEntry, ...] = ()

    def entries(self) -> tuple[AclEntry, ...]:
        if self.acl:
            return self.acl
        m = self.mode
        return (
            AclEntry("user_obj", m >> 6 & 7),
            AclEntry("group_obj", m >> 3 & 7),
            AclEntry("other", m & 7),
        )


class AclUnreadable(Exception):
    """The extended attribute holding the POSIX ACL exists but cannot be decoded or read."""


def parse_posix_acl(raw: bytes) -> tuple[AclEntry, ...]:
    """Decode ``system.posix_acl_access`` (version 2: 8-byte entries of tag, perm, id)."""
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != 2:
        raise AclUnreadable(f"unrecognised POSIX ACL ({len(raw)} bytes)")
    entries = []
    for offset in range(4, len(raw), 8):
        tag, perm, ident = struct.unpack_from("<HHI", raw, offset)
        if tag not in _ACL_TAGS:
            raise AclUnreadable(f"unknown POSIX ACL tag {tag:#x}")
        name = _ACL_TAGS[tag]
        entries.append(AclEntry(name, perm & 7, ident if name in ("user", "group") else None))
    return tuple(entries)


# -- tokens ------------------------------------------------------------------------------------
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


def object_access(obj: FileAccess, perm: int, names: Directory) -> Access:
    """Who holds ``perm`` on this one object, by the POSIX access check's classes."""
    entries = obj.entries()
    mask = next((e.perm for e in entries if e.tag == "mask"), 7)
    other_ok = any(e.perm & perm for e in entries if e.tag == "other")
    users, groups = [], []
    for e in entries:
        if e.tag == "user_obj":
            users.append((names.user_token(obj.uid), e.perm))
        elif e.tag == "user" and e.id is not None and e.id != obj.uid:  # the owner entry wins
            users.append((names.user_token(e.id), e.perm & mask))
        elif e.tag == "group_obj":
            groups.append((names.group_token(obj.gid), e.perm & (mask if obj.acl else 7)))
        elif e.tag == "group" and e.id is not None:
            groups.append((names.group_token(e.id), e.perm & mask))
    group_ok = any(p & perm for _, p in groups)
    allow, deny = set(), set()
    for token, p in users:  # a user's own entry decides for that user
        if p & perm:
            allow.add(token)
        elif group_ok or other_ok:
            deny.add(token)
    for token, p in groups:  # a matching group entry without the permission shuts "other" out
        if p & perm:
            allow.add(token)
        elif other_ok:
            deny.add(token)
    if other_ok:
        allow.add(EVERYONE)
    return Access(frozenset(allow), frozenset(deny - allow))


def intersect(a: Access, b: Access, names: Directory) -> Access:
    """Who passes both checks. Group-and-group combinations expand to the users known to be in both."""
    return Access(_intersect_allow(a.allow, b.allow, names), a.deny | b.deny)


def _intersect_allow(a: frozenset[str], b: frozenset[str], names: Directory) -> frozenset[str]:
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


def document_access(file: FileAccess, parents: Sequence[FileAccess], names: Directory) -> Access:
    """Read permission on the file, for those who can traverse every parent directory."""
    access = object_access(file, READ, names)
    for directory in parents:
        access = intersect(access, object_access(directory, EXECUTE, names), names)
    return access


# -- share rules -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AclRule:
    """A rule of the configuration, on top of the filesystem. Applied in the order given, each
    matching rule as: restrict_to (keep only those principals), then grant, then deny."""

    share: str | None = None
    path: str = "*"  # fnmatch glob on the path relative to the share root; "*" matches "/"
    grant: tuple[str, ...] = ()
    restrict_to: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def matches(self, share: str, path: str) -> bool:
        return (self.share is None or self.share == share) and fnmatch.fnmatchcase(path, self.path)


class RuleBook:
    """The share rules in force, shared by every share's permission reader. The embedded
    service replaces them when the config file changes; the reconcile that follows rewrites the
    ACL of each document whose readers changed."""

    def __init__(self, rules: Sequence[AclRule] = ()) -> None:
        self._rules = tuple(rules)

    @property
    def rules(self) -> tuple[AclRule, ...]:
        return self._rules

    def replace(self, rules: Sequence[AclRule]) -> None:
        self._rules = tuple(rules)  # one assignment: readers see the old or the new tuple


def apply_rules(
    access: Access, rules: Sequence[AclRule], share: str, path: str, names: Directory
) -> Access:
    allow, deny = access.allow, access.deny
    for rule in rules:
        if not rule.matches(share, path):
            continue
        if rule.restrict_to:
            allow = _intersect_allow(allow, frozenset(rule.restrict_to), names)
        allow = allow | frozenset(rule.grant)
        deny = deny | frozenset(rule.deny)
    return Access(allow, deny)


# -- the exact check, for explanations and for testing the encoding --------------------------
def posix_check(uid: int | None, gids: set[int], obj: FileAccess, perm: int) -> tuple[bool, str]:
    """The POSIX access check (acl(5)) for one process identity; returns the verdict and the
    entry that decided it."""
    entries = obj.entries()
    mask = next((e.perm for e in entries if e.tag == "mask"), 7)
    masked = bool(obj.acl) and any(e.tag == "mask" for e in entries)
    for e in entries:
        if e.tag == "user_obj" and uid == obj.uid:
            return bool(e.perm & perm), f"owner entry {_rwx(e.perm)}"
    for e in entries:
        if e.tag == "user" and e.id == uid:
            return bool(e.perm & mask & perm), f"named user entry {_rwx(e.perm)}" + (
                f" (mask {_rwx(mask)})" if masked else ""
            )
    matched = []
    for e in entries:
        if e.tag == "group_obj" and obj.gid in gids or e.tag == "group" and e.id in gids:
            effective = e.perm & mask if masked else e.perm
            if effective & perm:
                return (
                    True,
                    f"{'owning group' if e.tag == 'group_obj' else 'named group'} entry {_rwx(e.perm)}",
                )
            matched.append(e)
    if matched:
        return False, "group entries without the permission: " + ", ".join(
            _rwx(e.perm) for e in matched
        )
    other = next((e for e in entries if e.tag == "other"), AclEntry("other", 0))
    return bool(other.perm & perm), f"other entry {_rwx(other.perm)}"


def _rwx(perm: int) -> str:
    return "".join(c if perm & bit else "-" for c, bit in (("r", 4), ("w", 2), ("x", 1)))
