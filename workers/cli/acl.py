"""Access-control commands: ``acl explain``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from workers.cli.common import EXIT_OK, add_common, add_shares, need_shares, settings_of
from workers.settings import ConfigError, Settings


def register(sub: Any) -> None:
    p = sub.add_parser("acl", help="access control tools")
    acl_sub = p.add_subparsers(dest="acl_command", required=True)
    p = acl_sub.add_parser("explain", help="why a principal can or cannot read a document")
    add_common(p)
    add_shares(p)
    p.add_argument("path", help="a path inside a share, SHARE:PATH, or a file's smb:// URL")
    p.add_argument("--user", help="the user (default: anonymous)")
    p.add_argument("--group", action="append", default=[],
                   help="a group of the user; may repeat (local shares: on SMB shares the "
                        "groups come from the directory)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_acl_explain)


def cmd_acl_explain(args: argparse.Namespace) -> int:
    from index.acl import Principal, SystemDirectory
    from workers.sources.explain import explain, format_explanation, locate

    settings = settings_of(args)
    need_shares(settings)
    share, root, path = locate(settings, args.path)
    if root.startswith("smb://"):
        return _explain_smb(settings, share, root, path, args)
    groups = set(args.group)
    if args.user and settings.expand_groups:
        groups |= SystemDirectory().groups_of(args.user)
    report = explain(settings, args.path, Principal(args.user, tuple(sorted(groups))))
    print(json.dumps(report, indent=2) if args.json else format_explanation(report))
    return EXIT_OK


def _explain_smb(settings: Settings, share: str, root: str, path: str,
                 args: argparse.Namespace) -> int:  # fmt: skip
    from workers.runtime import make_directory
    from workers.sources.explain_smb import explain_smb, format_smb_explanation

    if args.group:
        raise ConfigError("--group does not apply to an SMB share: the user's groups are read "
                          "from the directory")  # fmt: skip
    directory = make_directory(settings)
    try:
        report = explain_smb(settings, share, root, path, args.user, directory)
    finally:
        if directory is not None:
            directory.close()
    print(json.dumps(report, indent=2) if args.json else format_smb_explanation(report))
    return EXIT_OK
