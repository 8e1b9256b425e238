"""``retry --failed``: failed documents become pending again, and are processed by whoever can:
the queue (distributed mode), the running embedded service (at its next reconcile), or this
process, now."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Collection
from typing import Any

from index.catalog import DocumentRecord
from ingest.paths import display
from workers.cli import EXIT_FAILED_DOCS, EXIT_OK
from workers.cli.common import progress, settings_of
from workers.components import open_catalog
from workers.query.client import read_service_info
from workers.runtime import open_runtime
from workers.settings import ConfigError, Settings
from workers.sync.report import ProgressFactory, SyncReport, no_progress


def retry_failed(
    settings: Settings, shares: Collection[str] = (), progress: ProgressFactory = no_progress
) -> dict[str, Any]:
    """Reset the failed documents (of ``shares``, all when empty) and have them processed;
    ``report`` (a sync summary) when they were processed here."""
    catalog = open_catalog(settings)
    try:
        failed = [r for r in catalog.failed() if not shares or r.share in shares]
        catalog.reset_failed(r.id for r in failed)
        result: dict[str, Any] = {
            "retried": len(failed),
            "paths": [f"{r.share}:{r.path}" for r in failed],
        }
        if failed and settings.broker_url:
            from workers.distributed.app import make_celery
            from workers.distributed.dispatch import Dispatcher

            dispatcher = Dispatcher(make_celery(settings), catalog, settings)
            result["dispatched"] = dispatcher.documents((r.id, 0.0) for r in failed)
            result["how"] = "sent to the queue"
        elif failed and read_service_info(settings.data_dir):
            result["how"] = "the running service retries them at its next reconcile"
    finally:
        catalog.close()
    if failed and "how" not in result:  # embedded, nothing running: do it now
        result["how"] = "processed now"
        result["report"] = process_now(settings, failed, progress)
    return result


def process_now(
    settings: Settings, records: list[DocumentRecord], progress: ProgressFactory = no_progress
) -> dict[str, Any]:
    if not settings.shares:
        raise ConfigError("no share given: use --share NAME=PATH (or 'shares' in the config file)")
    runtime = open_runtime(settings, progress=progress, warm=False, background=False)
    total = SyncReport()
    unconfigured: list[str] = []
    try:
        by_share: dict[str, dict[str, float]] = {}
        for r in records:
            by_share.setdefault(r.share, {})[r.path] = time.time()
        for share, paths in by_share.items():
            if share not in settings.shares:
                unconfigured.append(share)  # its documents stay pending
                continue
            total.add(runtime.indexer.sync_paths(share, paths))
    finally:
        runtime.close()
    return {**total.to_dict(), "unconfigured_shares": unconfigured}


def cmd_retry(args: argparse.Namespace) -> int:
    names = {spec.partition("=")[0] for spec in args.share}
    args.share = [spec for spec in args.share if "=" in spec]
    result = retry_failed(settings_of(args), names, progress)
    report = result.get("report", {})
    for share in report.get("unconfigured_shares", []):
        print(f"warning: share {share!r} is not configured; its documents stay pending",
              file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        n = result["retried"]
        print(f"{n} failed document(s) retried" + (f": {result['how']}" if n else ""))
        for failure in report.get("failures", []):
            print(
                f"  still failing {failure['share']}:{display(failure['path'])}: {failure['reason']}"
            )
    return EXIT_FAILED_DOCS if report.get("documents", {}).get("failed", 0) else EXIT_OK
