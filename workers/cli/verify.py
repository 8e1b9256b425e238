"""``shareindex verify``: share, catalog and index compared (``workers.sync.verify``), through
the running service when it holds the index, else here; ``--repair`` fixes through a reconcile."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from workers.cli import EXIT_FAILED_DOCS, EXIT_FATAL, EXIT_OK
from workers.cli.common import need_shares, progress, settings_of
from workers.components import finish_writes
from workers.query.client import read_service_info
from workers.runtime import open_runtime
from workers.sync.verify import format_report, verify_runtime


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0: no drift (after the repair, with --repair); 3: drift, listed; 1: fatal."""
    settings = settings_of(args)
    need_shares(settings)
    wanted = [spec.split("=", 1)[0] for spec in args.share]
    info = read_service_info(settings.data_dir)
    result: dict[str, Any] | None = None
    if info is not None and info.get("token"):  # the running service holds the index
        params: list[tuple[str, str | int | float | bool | None]] = [("share", n) for n in wanted]
        params.append(("repair", "true" if args.repair else "false"))
        try:
            reply = httpx.post(f"{info['url']}/admin/verify", params=params, timeout=3600,
                               headers={"Authorization": f"Bearer {info['token']}"})  # fmt: skip
        except httpx.TransportError:  # a stale service.json: the process is gone
            reply = None
        if reply is not None and reply.status_code != 200:
            print(f"error: the service at {info['url']} answered {reply.status_code}: "
                  f"{reply.text[:300]}", file=sys.stderr)  # fmt: skip
            return EXIT_FATAL
        result = reply.json() if reply is not None else None
    if result is None:
        runtime = open_runtime(settings, progress, warm=False, background=False)
        try:
            result = verify_runtime(runtime, wanted, args.repair, runtime.indexer.sync_share)
            if args.repair:
                finish_writes(settings, runtime.store, lambda m: print(m, file=sys.stderr))
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return EXIT_FATAL
        finally:
            runtime.close()
    final = result.get("after_repair") or result
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(format_report(result))
        if "after_repair" in result:
            print("after the repair: " + format_report(result["after_repair"]))
    return EXIT_OK if final["clean"] else EXIT_FAILED_DOCS
