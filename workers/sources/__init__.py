"""Where a share's files come from: one ``Source`` per share (``base``: the Protocol), a local
folder (``local``, with the network-mount guard of ``mounts``) or an SMB share (``smb``). The
kind of share is decided here, once, from its configured root; nothing else asks."""

from __future__ import annotations

from index.permissions.posix import PermissionResolver
from index.permissions.rules import RuleBook
from workers.settings import Settings
from workers.sources.base import Source
from workers.sources.local import LocalFolder
from workers.sources.smb import SmbShare


def open_sources(settings: Settings, rules: RuleBook) -> dict[str, Source]:
    """Each configured share as a Source, each with its own permission reader (the share rules
    shared by all, replaceable)."""
    sources: dict[str, Source] = {}
    for name, root in settings.shares.items():
        if isinstance(root, str):  # smb://
            sources[name] = SmbShare(name, root, *settings.smb_account(root), rules,
                                     settings.share_permissions.get(name),
                                     settings.share_permissions_missing)  # fmt: skip
        else:
            sources[name] = LocalFolder(name, str(root), PermissionResolver(rules))
    return sources
