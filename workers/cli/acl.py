"""``shareindex acl explain``: why a principal can or cannot read a document (``explain`` for a
local folder's POSIX permissions, ``explain_smb`` for an SMB share's two Windows layers)."""

from __future__ import annotations

import argparse
import json

from index.permissions.names import SystemDirectory
from index.permissions.readers import Principal
from index.permissions.rules import RuleBook
from workers.cli import EXIT_OK
from workers.cli.common import need_shares, settings_of
from workers.cli.explain import explain, format_explanation, locate
from workers.cli.explain_smb import explain_smb, format_smb_explanation
from workers.components import make_directory
from workers.settings import ConfigError, Settings
from workers.sources import open_sources
from workers.sources.smb import SmbShare


def cmd_acl_explain(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    need_shares(settings)
    share, _, path = locate(settings, args.path)
    source = open_sources(settings, RuleBook(settings.rules()))[share]
    if isinstance(source, SmbShare):
        return _explain_smb(settings, source, path, args)
    groups = set(args.group)
    if args.user and settings.expand_groups:
        groups |= SystemDirectory().groups_of(args.user)
    report = explain(settings, args.path, Principal(args.user, tuple(sorted(groups))))
    print(json.dumps(report, indent=2) if args.json else format_explanation(report))
    return EXIT_OK


def _explain_smb(settings: Settings, source: SmbShare, path: str,
                 args: argparse.Namespace) -> int:  # fmt: skip
    if args.group:
        raise ConfigError("--group does not apply to an SMB share: the user's groups are read "
                          "from the directory")  # fmt: skip
    directory = make_directory(settings)
    try:
        report = explain_smb(settings, source, path, args.user, directory)
    finally:
        if directory is not None:
            directory.close()
    print(json.dumps(report, indent=2) if args.json else format_smb_explanation(report))
    return EXIT_OK
