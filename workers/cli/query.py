"""Query commands: ``search``, ``eval``, ``token create``."""

from __future__ import annotations

import argparse
import json
import sys

from index.permissions.callers import new_token
from ingest.paths import display
from workers.cli import EXIT_OK
from workers.cli.common import settings_of
from workers.query.client import search_client
from workers.query.evaluate import evaluate, format_evaluation, load_questions
from workers.settings import ConfigError


def cmd_search(args: argparse.Namespace) -> int:
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
    if not args.on_behalf and not args.user and not args.group:
        raise ConfigError(
            "a token needs --user/--group (its principal) or --on-behalf (a trusted service)"
        )
    if args.plain_headers and not args.on_behalf:
        raise ConfigError("--plain-headers is for an --on-behalf token (a front end that names "
                          "its user in a header)")  # fmt: skip
    token, digest = new_token()
    text = json.dumps  # a TOML basic string: quotes and backslashes escaped
    lines = ["[[api_tokens]]", f"name = {text(args.name)}", f'sha256 = "{digest}"']
    if args.user:
        lines.append(f"user = {text(args.user)}")
    if args.group:
        lines.append("groups = [" + ", ".join(text(g) for g in args.group) + "]")
    if args.on_behalf:
        lines.append("on_behalf = true")
    if args.plain_headers:
        lines.append("plain_headers = true")
    if args.admin:
        lines.append("admin = true")
    print(f"token (shown once, give it to the caller): {token}", file=sys.stderr)
    print("\n".join(lines))
    return EXIT_OK
