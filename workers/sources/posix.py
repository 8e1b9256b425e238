"""Reads who may read a document from the share: stat, POSIX ACL xattr, every parent directory."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from index.acl import (
    EXECUTE,
    NOBODY,
    READ,
    Access,
    AclRule,
    AclUnreadable,
    Directory,
    FileAccess,
    RuleBook,
    SystemDirectory,
    apply_rules,
    intersect,
    object_access,
    parse_posix_acl,
)
from ingest import sharefs
from ingest.errors import IngestError
from ingest.paths import BadPath

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
        access = intersect(object_access(file, READ, self.names), parents, self.names)
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
