"""The user and group database of POSIX shares: names for ids, groups of a user, members of a
group (the system's ``pwd`` and ``grp``: /etc/passwd, /etc/group, or NSS), cached."""

from __future__ import annotations

import grp
import pwd
from functools import lru_cache
from typing import Protocol


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

