"""Query commands: ``search``, ``eval``, ``token create``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ingest.paths import display
from workers.cli.common import EXIT_OK, add_common, settings_of


def register(sub: Any) -> None:
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
    p.set_defaults(func=cmd_search)

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
    p.set_defaults(func=cmd_eval)

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
    p.add_argument("--admin", action="store_true", help="may see the full status")
    p.set_defaults(func=cmd_token_create)


def cmd_search(args: argparse.Namespace) -> int:
    from workers.query.client import search_client
    from workers.settings import ConfigError

    settings = settings_of(args)
    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    if not 0 <= args.context <= 5:
        raise ConfigError("--context must be between 0 and 5")
    with search_client(settings) as client:
        hits = client.search(
            args.query, args.user, tuple(args.group), args.k, args.mode, args.context
        )
    if args.json:
        print(json.dumps(hits, ensure_ascii=False, indent=2))
        return EXIT_OK
    if not hits:
        print("no results")
    for i, hit in enumerate(hits, 1):
        m = hit["metadata"]
        page = f" p.{m['page_number']}" if m.get("page_number") else ""
        print(
            f"{i}. {m['share']}:{display(m['path'])}{page} [{m['kind']}] score {hit['score']:.3f}"
        )
        print("   " + hit["page_content"][:300].replace("\n", "\n   "))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from workers.query.client import search_client
    from workers.query.evaluate import evaluate, format_evaluation, load_questions

    settings = settings_of(args)
    questions = load_questions(args.questions)
    with search_client(settings) as client:
        report = evaluate(
            client, questions, k=args.k, modes=args.mode or ["dense", "sparse", "hybrid"]
        )
    print(
        json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_evaluation(report)
    )
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    from workers.query.auth import new_token
    from workers.settings import ConfigError

    if not args.on_behalf and not args.user and not args.group:
        raise ConfigError(
            "a token needs --user/--group (its principal) or --on-behalf (a trusted service)"
        )
    token, digest = new_token()
    lines = ["[[api_tokens]]", f'name = "{args.name}"', f'sha256 = "{digest}"']
    if args.user:
        lines.append(f'user = "{args.user}"')
    if args.group:
        lines.append("groups = [" + ", ".join(f'"{g}"' for g in args.group) + "]")
    if args.on_behalf:
        lines.append("on_behalf = true")
    if args.admin:
        lines.append("admin = true")
    print(f"token (shown once, give it to the caller): {token}", file=sys.stderr)
    print("\n".join(lines))
    return EXIT_OK
