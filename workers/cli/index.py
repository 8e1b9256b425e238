"""Indexing commands: ``sync``, ``run``, ``retry --failed``, ``status``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from ingest.paths import display
from ingest.smbfs import ShareUnavailable
from workers.cli import EXIT_FAILED_DOCS, EXIT_FATAL, EXIT_OK
from workers.cli.common import (
    announce_nlp,
    need_shares,
    progress,
    settings_of,
)
from workers.components import finish_writes, open_catalog, wait_for_catalog
from workers.query.client import read_service_info
from workers.runtime import open_runtime
from workers.settings import config_file_in_use
from workers.status import format_status, status_report
from workers.sync.report import SyncReport


def cmd_sync(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    need_shares(settings)
    announce_nlp()
    runtime = open_runtime(settings, progress=progress, warm=False, background=False)
    total, unavailable = SyncReport(), []
    try:
        for name in settings.shares:
            try:
                total.add(runtime.indexer.sync_share(name))
            except ShareUnavailable as exc:  # the other shares go on; this one's index is kept
                unavailable.append(f"share {name}: {exc}")
        finish_writes(settings, runtime.store, lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        runtime.close()
    summary = total.to_dict()
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        d, c = summary["documents"], summary["chunks"]
        print(", ".join(f"{n} {k}" for k, n in d.items()) + f"; chunks: {c['embedded']} embedded, "
              f"{c['reused']} reused; {summary['seconds']:.1f} s")  # fmt: skip
        if summary["formats"]:
            print("  indexed: " + ", ".join(f"{n} {k}" for k, n in summary["formats"].items()))
        for f in summary["failures"]:
            print(f"  failed {f['share']}:{display(f['path'])}: {f['reason']}")
        for reason, n in summary["skipped_by_reason"].items():
            print(f"  skipped {n} x {reason}")
    for share, held in summary["deletions_held"].items():
        print(f"shareindex: warning: {share}: {held['documents']} deletion(s) held: "
              f"{held['reason']}; when this is right: shareindex deletes --confirm {share}",
              file=sys.stderr)  # fmt: skip
    for line in unavailable:
        print(f"shareindex: error: {line}", file=sys.stderr)
    if unavailable:
        return EXIT_FATAL
    return EXIT_FAILED_DOCS if total.failed else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    # here, not at the top: the query API (FastAPI, uvicorn, the MCP SDK) costs 1.6 s to import,
    # which sync, status and deletes do not need
    from workers.query.server import check_port_free
    from workers.watch.embedded import EmbeddedService

    def load() -> Any:
        return settings_of(args, api_port=args.port, polling_shares=args.poll or None)

    settings = load()
    need_shares(settings)
    check_port_free(settings.api_host, settings.api_port)
    wait_for_catalog(settings, lambda m: print(m, file=sys.stderr, flush=True))
    announce_nlp()
    print("loading the embedding model and the index...", file=sys.stderr)
    def say(message: str) -> None:
        print(message, flush=True)

    runtime = open_runtime(settings, lanes=say)
    try:
        service = EmbeddedService(settings, runtime, say, config_file_in_use(args.config), load)
        return service.run()
    finally:
        runtime.close()


def cmd_deletes(args: argparse.Namespace) -> int:
    """List the held deletions, or confirm a share's (exit 1 when it has none held)."""
    settings = settings_of(args)
    catalog = open_catalog(settings)
    try:
        if args.confirm:
            count = catalog.confirm_deletions(args.confirm)
            if not count:
                print(f"error: no deletions are held for share {args.confirm!r}", file=sys.stderr)
                return EXIT_FATAL
            print(f"confirmed: the next reconcile of {args.confirm} deletes its {count} held "
                  "document(s)")  # fmt: skip
            return EXIT_OK
        held = catalog.held_deletions()
    finally:
        catalog.close()
    if args.json:
        print(json.dumps(held, ensure_ascii=False, indent=2))
    elif not held:
        print("no deletions held")
    else:
        for share, h in held.items():
            print(f"{share}: {h['documents']} document(s) held since {h['since']}: {h['reason']}")
    return EXIT_OK


def _service_in_flight(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the running service works on now (its /status); None when it does not answer."""
    if not info or not info.get("token"):
        return None
    try:
        reply = httpx.get(f"{info['url']}/status", timeout=5,
                          headers={"Authorization": f"Bearer {info['token']}"})  # fmt: skip
        reply.raise_for_status()
        found = reply.json().get("in_flight")
        return found if isinstance(found, dict) else None
    except (httpx.HTTPError, ValueError):
        return None


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    catalog = open_catalog(settings)
    try:
        info = read_service_info(settings.data_dir)
        service = {"pid": info["pid"], "url": info["url"]} if info else None
        report = status_report(catalog, service, _service_in_flight(info))
    finally:
        catalog.close()
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_status(report))
    return EXIT_OK
