"""The command line's grammar: every command, its arguments and the function that runs it
(``handler``: "MODULE:FUNCTION" of ``workers.cli``). Nothing here imports what a command needs:
``shareindex --help`` and a mistyped argument answer at once, and each command imports only its
own module (``workers.cli.main``)."""

from __future__ import annotations

import argparse
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shareindex", description="Keep an ACL-aware RAG index fresh from file shares."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (_index, _query, _distributed, _acl):
        group(sub)
    return parser


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the catalog and the embedded index live")
    p.add_argument("--config", help="TOML settings file (also SHAREINDEX_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")


def add_shares(p: argparse.ArgumentParser) -> None:
    p.add_argument("--share", action="append", default=[], metavar="NAME=PATH",
                   help="a share to index; may repeat (default: the shares of the config file)")  # fmt: skip


def _index(sub: Any) -> None:
    p = sub.add_parser("sync", help="reconcile shares with the index once, then exit")
    add_common(p)
    add_shares(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler="index:cmd_sync")

    p = sub.add_parser("run", help="embedded service: reconcile, watch, index, serve the query API")
    add_common(p)
    add_shares(p)
    p.add_argument("--port", type=int, help="query API port on 127.0.0.1 (default 8765)")
    p.add_argument("--poll", action="append", default=[], metavar="NAME",
                   help="watch this share by polling (network mounts: SMB, NFS); may repeat")  # fmt: skip
    p.set_defaults(handler="index:cmd_run")

    p = sub.add_parser("retry", help="process failed documents again (after a fix)")
    add_common(p)
    p.add_argument("--failed", action="store_true", required=True,
                   help="replay the documents whose status is failed")  # fmt: skip
    p.add_argument("--share", action="append", default=[], metavar="NAME[=PATH]",
                   help="only this share; may repeat (NAME=PATH also tells where it is)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="retry:cmd_retry")

    p = sub.add_parser(
        "verify", help="compare share, catalog and index; name every drift (exit 3 if any)"
    )
    add_common(p)
    add_shares(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--repair", action="store_true",
                   help="fix what was found through the normal pipeline, then verify again")  # fmt: skip
    p.set_defaults(handler="verify:cmd_verify")

    p = sub.add_parser(
        "rebuild", help="replace a damaged or lost catalog or index, then reconcile and verify"
    )
    add_common(p)
    add_shares(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="rebuild:cmd_rebuild")

    p = sub.add_parser(
        "deletes", help="deletions held back because a share looked emptied; confirm them"
    )
    add_common(p)
    p.add_argument("--confirm", metavar="SHARE",
                   help="the held deletions of SHARE are real: the next reconcile does them")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="index:cmd_deletes")

    p = sub.add_parser("status", help="documents by status, failures with reasons, what is pending")
    add_common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="index:cmd_status")


def _query(sub: Any) -> None:
    p = sub.add_parser("search", help="top-k chunks the principal may read")
    add_common(p)
    p.add_argument("query")
    p.add_argument("--user", help="search as this user (default: anonymous, public documents only)")
    p.add_argument("--group", action="append", default=[], help="a group of the user; may repeat")
    p.add_argument("--k", type=int, default=5, help="number of hits (default 5)")
    p.add_argument("--mode", choices=["hybrid", "dense", "sparse"], default="hybrid")
    p.add_argument(
        "--context",
        type=int,
        default=0,
        metavar="N",
        help="also return N chunks before and after each hit",
    )
    p.add_argument("--json", action="store_true", help="print hits as a JSON array")
    p.set_defaults(handler="query:cmd_search")

    p = sub.add_parser("eval", help="recall@k and MRR of each retrieval mode on a question set")
    add_common(p)
    p.add_argument(
        "questions", help='JSONL: {"question": ..., "expected": [paths], "user"?, "groups"?}'
    )
    p.add_argument("--k", type=int, default=5)
    p.add_argument(
        "--mode", action="append", choices=["dense", "sparse", "hybrid"], help="default: all three"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="query:cmd_eval")

    p = sub.add_parser("token", help="query API tokens")
    token_sub = p.add_subparsers(dest="token_command", required=True)
    p = token_sub.add_parser(
        "create", help="make a token; prints it once, and the lines for the config file"
    )
    p.add_argument("name")
    p.add_argument("--user", help="the principal the token searches as")
    p.add_argument("--group", action="append", default=[])
    p.add_argument(
        "--on-behalf",
        action="store_true",
        help="a trusted service: searches as the principal it passes",
    )
    p.add_argument("--plain-headers", action="store_true",
                   help="(with --on-behalf) its front end may name the user in a plain header")  # fmt: skip
    p.add_argument("--admin", action="store_true", help="may see the full status")
    add_common(p)
    p.set_defaults(handler="query:cmd_token_create")


def _distributed(sub: Any) -> None:
    p = sub.add_parser("watch", help="distributed mode: watch shares, send changes to the queue")
    add_common(p)
    add_shares(p)
    p.add_argument("--poll", action="append", default=[], metavar="NAME",
                   help="watch this share by polling (network mounts: SMB, NFS); may repeat")  # fmt: skip
    p.set_defaults(handler="distributed:cmd_watch")

    p = sub.add_parser("worker", help="distributed mode: a Celery worker")
    add_common(p)
    add_shares(p)
    p.add_argument("--queues", default="cpu,gpu,bulk",
                   help="queues to consume (default cpu,gpu,bulk)")  # fmt: skip
    p.add_argument("--pool", choices=["prefork", "threads"],
                   help="prefork (default with a Qdrant server) or threads (Qdrant local mode)")  # fmt: skip
    p.add_argument("--concurrency", type=int, help="pool size (default: cores; threads: 2)")
    p.set_defaults(handler="distributed:cmd_worker")

    p = sub.add_parser("api", help="distributed mode: the query API (needs a Qdrant server)")
    add_common(p)
    p.add_argument("--port", type=int, help="port (default 8765); address: api_host")
    p.set_defaults(handler="distributed:cmd_api")

    p = sub.add_parser("flower", help="Flower, the Celery monitor, on the same broker")
    add_common(p)
    p.add_argument("--port", type=int, help="port (default 5555); address: flower_host")
    p.set_defaults(handler="distributed:cmd_flower")


def _acl(sub: Any) -> None:
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
    p.set_defaults(handler="acl:cmd_acl_explain")
