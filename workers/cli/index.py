"""Indexing commands: ``sync``, ``run``, ``retry --failed``, ``status``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ingest.paths import display
from workers.cli.common import (
    EXIT_FAILED_DOCS,
    EXIT_FATAL,
    EXIT_OK,
    add_common,
    add_shares,
    announce_nlp,
    need_shares,
    progress,
    settings_of,
)


def register(sub: Any) -> None:
    p = sub.add_parser("sync", help="reconcile shares with the index once, then exit")
    add_common(p)
    add_shares(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("run", help="embedded service: reconcile, watch, index, serve the query API")
    add_common(p)
    add_shares(p)
    p.add_argument("--port", type=int, help="query API port on 127.0.0.1 (default 8765)")
    p.add_argument("--poll", action="append", default=[], metavar="NAME",
                   help="watch this share by polling (network mounts: SMB, NFS); may repeat")  # fmt: skip
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("retry", help="process failed documents again (after a fix)")
    add_common(p)
    p.add_argument("--failed", action="store_true", required=True,
                   help="replay the documents whose status is failed")  # fmt: skip
    p.add_argument("--share", action="append", default=[], metavar="NAME[=PATH]",
                   help="only this share; may repeat (NAME=PATH also tells where it is)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser(
        "verify", help="compare share, catalog and index; name every drift (exit 3 if any)"
    )
    add_common(p)
    add_shares(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--repair", action="store_true",
                   help="fix what was found through the normal pipeline, then verify again")  # fmt: skip
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "rebuild", help="replace a damaged or lost catalog or index, then reconcile and verify"
    )
    add_common(p)
    add_shares(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser(
        "deletes", help="deletions held back because a share looked emptied; confirm them"
    )
    add_common(p)
    p.add_argument("--confirm", metavar="SHARE",
                   help="the held deletions of SHARE are real: the next reconcile does them")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_deletes)

    p = sub.add_parser("status", help="documents by status, failures with reasons, what is pending")
    add_common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


def cmd_sync(args: argparse.Namespace) -> int:
    from ingest.smbfs import ShareUnavailable
    from workers.runtime import finish_writes, open_runtime
    from workers.sync.report import SyncReport

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
    from workers.query.server import check_port_free
    from workers.runtime import open_runtime, wait_for_catalog
    from workers.settings import config_file_in_use
    from workers.watch.embedded import EmbeddedService

    def load() -> Any:
        return settings_of(args, api_port=args.port, polling_shares=args.poll or None)

    settings = load()
    need_shares(settings)
    check_port_free(settings.api_host, settings.api_port)
    wait_for_catalog(settings, lambda m: print(m, file=sys.stderr, flush=True))
    announce_nlp()
    print("loading the embedding model and the index...", file=sys.stderr)
    runtime = open_runtime(settings)
    try:
        config_file = config_file_in_use(args.config)
        service = EmbeddedService(
            settings, runtime, lambda m: print(m, flush=True), config_file, load
        )
        return service.run()
    finally:
        runtime.close()


def cmd_retry(args: argparse.Namespace) -> int:
    from workers.sync.retry import retry_failed

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


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Exit 0: rebuilt (or nothing to rebuild) and verified clean; 3: drift left; 1: fatal."""
    from workers.query.server import read_service_info
    from workers.rebuild import rebuild

    settings = settings_of(args)
    need_shares(settings)
    info = read_service_info(settings.data_dir)
    if info is not None:
        print(f"error: a service (pid {info['pid']}) holds this data dir: stop it first",
              file=sys.stderr)  # fmt: skip
        return EXIT_FATAL
    result = rebuild(settings, lambda m: print(m, file=sys.stderr, flush=True), progress)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        from workers.verify import format_report

        print(f"catalog: {result['catalog']}; index: {result['index']}")
        docs = result["sync"]["documents"]
        print("reconciled: " + ", ".join(f"{n} {k}" for k, n in docs.items() if n))
        print(format_report(result["verify"]))
    return EXIT_OK if result["verify"]["clean"] else EXIT_FAILED_DOCS


def cmd_deletes(args: argparse.Namespace) -> int:
    """List the held deletions, or confirm a share's (exit 1 when it has none held)."""
    from workers.runtime import open_catalog

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


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0: no drift (after the repair, with --repair); 3: drift, listed; 1: fatal."""
    from workers.query.server import read_service_info
    from workers.verify import format_report

    settings = settings_of(args)
    need_shares(settings)
    wanted = [spec.split("=", 1)[0] for spec in args.share]
    info = read_service_info(settings.data_dir)
    result: dict[str, Any] | None = None
    if info is not None and info.get("token"):  # the running service holds the index
        import httpx

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
        from workers.runtime import finish_writes, open_runtime
        from workers.verify import verify_runtime

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


def _service_in_flight(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the running service works on now (its /status); None when it does not answer."""
    if not info or not info.get("token"):
        return None
    import httpx

    try:
        reply = httpx.get(f"{info['url']}/status", timeout=5,
                          headers={"Authorization": f"Bearer {info['token']}"})  # fmt: skip
        reply.raise_for_status()
        found = reply.json().get("in_flight")
        return found if isinstance(found, dict) else None
    except (httpx.HTTPError, ValueError):
        return None


def cmd_status(args: argparse.Namespace) -> int:
    from workers.query.server import read_service_info
    from workers.runtime import open_catalog
    from workers.status import format_status, status_report

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
