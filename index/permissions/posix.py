"""POSIX permissions (source side): a file's mode bits and POSIX ACL, and every folder above it,
read from the share and turned into readers.

The readers are the POSIX access check of the file for reading, intersected with the check of
every directory from the share root down for traversing, then the share rules in their order.
The encoding is sound (it never lets through a principal the POSIX check refuses) and exact
except for two rare mixes, where it denies: a user whose own entry grants read but who is in a
group whose entry does not while "other" may read; and a user in two groups of which only one
grants read while "other" may read.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from index.permissions.names import Directory, SystemDirectory
from index.permissions.readers import EVERYONE, NOBODY, Access, intersect
from index.permissions.rules import AclRule, RuleBook, apply_rules
from ingest import sharefs
from ingest.errors import IngestError
from ingest.paths import BadPath

READ, WRITE, EXECUTE = 4, 2, 1


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



def document_access(file: FileAccess, parents: Sequence[FileAccess], names: Directory) -> Access:
    """Read permission on the file, for those who can traverse every parent directory."""
    traverse: Access | None = None
    for directory in parents:
        own = object_access(directory, EXECUTE, names)
        traverse = own if traverse is None else intersect(traverse, own, names)
    return readable(file, traverse, names)


def readable(file: FileAccess, traverse: Access | None, names: Directory) -> Access:
    """Read permission on the file for those in ``traverse`` (who may reach it; None: anyone)."""
    access = object_access(file, READ, names)
    return access if traverse is None else intersect(access, traverse, names)



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



# -- reading them from the share ---------------------------------------------------------------
_ACL_XATTR = "system.posix_acl_access"
_NO_ACL = {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}


def read_file_access(path: str | bytes, st: os.stat_result | None = None) -> FileAccess:
    """Owner, group, mode and POSIX ACL of ``path`` (never following a symlink)."""
    st = st or os.lstat(path)
    try:
        raw = os.getxattr(path, _ACL_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_ACL:
            return FileAccess(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
        raise AclUnreadable(f"cannot read the POSIX ACL: {exc.strerror}") from exc
    return FileAccess(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), parse_posix_acl(raw))


def access_in_share(root: str, rel: str) -> FileAccess:
    """``read_file_access`` of a text-form path under ``root`` ("" for the root itself)."""
    with sharefs.metadata_path(root, rel) as path:
        return read_file_access(path)


class PermissionResolver:
    """Effective readers of documents, with the directories' traversal cached for one pass.

    The cache is keyed by share root and folder: a resolver shared by several shares (or by
    threads planning different shares) never answers for one share with another's folders."""

    def __init__(
        self, rules: RuleBook | Sequence[AclRule] = (), names: Directory | None = None
    ) -> None:
        self.rule_book = rules if isinstance(rules, RuleBook) else RuleBook(rules)
        self.names = names or SystemDirectory()
        self._traverse: dict[tuple[str, str], Access] = {}

    def reset(self) -> None:
        """Forget cached directories: call at the start of each pass over a share."""
        self._traverse.clear()

    def resolve(self, share: str, root: str, path: str) -> tuple[Access, str | None]:
        """The document's tokens, and why it is readable by nobody when its ACL cannot be read."""
        try:
            file = access_in_share(root, path)
            parents = self._parents(root, path)
        except (AclUnreadable, OSError, IngestError, BadPath) as exc:
            reason = (
                str(exc)
                if isinstance(exc, AclUnreadable)
                else f"cannot read permissions: {getattr(exc, 'strerror', None) or exc}"
            )
            return NOBODY, f"{reason}; readable by nobody"
        access = readable(file, parents, self.names)
        return apply_rules(access, self.rule_book.rules, share, path, self.names), None

    def _parents(self, root: str, path: str) -> Access:
        """Who can traverse the share root and every directory down to ``path``'s folder."""
        parts = path.split("/")[:-1]
        rel = ""
        access = self._dir(root, rel, None)
        for part in parts:
            rel = f"{rel}/{part}" if rel else part
            access = self._dir(root, rel, access)
        return access

    def _dir(self, root: str, rel: str, above: Access | None) -> Access:
        cached = self._traverse.get((root, rel))
        if cached is None:
            directory = access_in_share(root, rel)
            own = object_access(directory, EXECUTE, self.names)
            cached = own if above is None else intersect(above, own, self.names)
            self._traverse[(root, rel)] = cached
        return cached


def explain_chain(root: str, path: str) -> list[tuple[str, FileAccess]]:
    """The share root, each directory down, then the file: what ``acl explain`` walks through."""
    chain = [("(share root)", access_in_share(root, ""))]
    rel = ""
    for part in path.split("/")[:-1]:
        rel = f"{rel}/{part}" if rel else part
        chain.append((rel + "/", access_in_share(root, rel)))
    chain.append((path, access_in_share(root, path)))
    return chain
