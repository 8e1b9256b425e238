"""``shareindex``: the command line. Exit codes: 0 ok, 1 fatal (one line on stderr), 3 some
documents failed (recorded; everything else was indexed)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ingest.paths import display
from workers.offline import enforce_offline

EXIT_OK, EXIT_FATAL, EXIT_FAILED_DOCS = 0, 1, 3
log = logging.getLogger("shareindex")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the catalog and the embedded index live")
    p.add_argument("--config", help="TOML settings file (also SHAREINDEX_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")


def _shares(p: argparse.ArgumentParser) -> None:
    p.add_argument("--share", action="append", default=[], metavar="NAME=PATH",
                   help="a share to index; may repeat (default: the shares of the config file)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shareindex", description="Keep an ACL-aware RAG index fresh from file shares."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sync", help="reconcile shares with the index once, then exit")
    _common(p)
    _shares(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("run", help="embedded service: reconcile, watch, index, serve the query API")
    _common(p)
    _shares(p)
    p.add_argument("--port", type=int, help="query API port on 127.0.0.1 (default 8765)")
    p.add_argument("--poll", action="append", default=[], metavar="NAME",
                   help="watch this share by polling (network mounts: SMB, NFS); may repeat")  # fmt: skip
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("watch", help="distributed mode: watch shares, send changes to the queue")
    _common(p)
    _shares(p)
    p.add_argument("--poll", action="append", default=[], metavar="NAME",
                   help="watch this share by polling (network mounts: SMB, NFS); may repeat")  # fmt: skip
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("worker", help="distributed mode: a Celery worker")
    _common(p)
    _shares(p)
    p.add_argument("--queues", default="cpu,gpu", help="queues to consume (default cpu,gpu)")
    p.add_argument("--pool", choices=["prefork", "threads"],
                   help="prefork (default with a Qdrant server) or threads (Qdrant local mode)")  # fmt: skip
    p.add_argument("--concurrency", type=int, help="pool size (default: cores; threads: 2)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("api", help="distributed mode: the query API (needs a Qdrant server)")
    _common(p)
    p.add_argument("--port", type=int, help="port (default 8765); address: api_host")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("flower", help="Flower, the Celery monitor, on the same broker")
    _common(p)
    p.add_argument("--port", type=int, help="port (default 5555); address: flower_host")
    p.set_defaults(func=cmd_flower)

    p = sub.add_parser("retry", help="process failed documents again (after a fix)")
    _common(p)
    p.add_argument("--failed", action="store_true", required=True,
                   help="replay the documents whose status is failed")  # fmt: skip
    p.add_argument("--share", action="append", default=[], metavar="NAME[=PATH]",
                   help="only this share; may repeat (NAME=PATH also tells where it is)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("search", help="top-k chunks the principal may read")
    _common(p)
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
    _common(p)
    p.add_argument(
        "questions", help='JSONL: {"question": ..., "expected": [paths], "user"?, "groups"?}'
    )
    p.add_argument("--k", type=int, default=5)
    p.add_argument(
        "--mode", action="append", choices=["dense", "sparse", "hybrid"], help="default: all three"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("acl", help="access control tools")
    acl_sub = p.add_subparsers(dest="acl_command", required=True)
    p = acl_sub.add_parser("explain", help="why a principal can or cannot read a document")
    _common(p)
    _shares(p)
    p.add_argument("path", help="a path inside a share, or SHARE:PATH")
    p.add_argument("--user", help="the user (default: anonymous)")
    p.add_argument("--group", action="append", default=[], help="a group of the user; may repeat")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_acl_explain)

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

    p = sub.add_parser("status", help="documents by status, failures with reasons, what is pending")
    _common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from workers.settings import load_settings, parse_share

    overrides: dict[str, Any] = {"data_dir": args.data_dir, **extra}
    if getattr(args, "share", None):
        overrides["shares"] = dict(parse_share(spec) for spec in args.share)
    return load_settings(args.config, **overrides)


def _need_shares(settings: Any) -> None:
    from workers.settings import ConfigError

    if not settings.shares:
        raise ConfigError("no share given: use --share NAME=PATH (or 'shares' in the config file)")


def _announce_nlp() -> None:
    from ingest import nlp_fallback

    if not nlp_fallback._spacy_model_installed():
        print("note: spaCy model en_core_web_sm is not installed; unstructured's text classification "
              "uses ShareIndex's offline fallback (nothing is downloaded)", file=sys.stderr)  # fmt: skip


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="doc",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
    )


def cmd_sync(args: argparse.Namespace) -> int:
    from workers.runtime import open_runtime
    from workers.sync.indexer import SyncReport

    settings = _settings(args)
    _need_shares(settings)
    _announce_nlp()
    runtime = open_runtime(settings, progress=_progress, warm=False)
    total = SyncReport()
    try:
        for name in settings.shares:
            total.add(runtime.indexer.sync_share(name))
    finally:
        runtime.close()
    summary = total.to_dict()
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        d, c = summary["documents"], summary["chunks"]
        print(", ".join(f"{n} {k}" for k, n in d.items()) + f"; chunks: {c['embedded']} embedded, "
              f"{c['reused']} reused; {summary['seconds']:.1f} s")  # fmt: skip
        for f in summary["failures"]:
            print(f"  failed {f['share']}:{display(f['path'])}: {f['reason']}")
    return EXIT_FAILED_DOCS if total.failed else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from workers.query.server import check_port_free
    from workers.runtime import open_runtime
    from workers.settings import config_file_in_use
    from workers.watch.embedded import EmbeddedService

    def load() -> Any:
        return _settings(args, api_port=args.port, polling_shares=args.poll or None)

    settings = load()
    _need_shares(settings)
    check_port_free(settings.api_host, settings.api_port)
    _announce_nlp()
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


def cmd_watch(args: argparse.Namespace) -> int:
    from workers.watch.distributed import WatchService

    settings = _settings(args, polling_shares=args.poll or None)
    _need_shares(settings)
    return WatchService(settings, lambda m: print(m, flush=True)).run()


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.distributed.queues import parse_queues
    from workers.distributed.worker import prepare_metrics, run_worker
    from workers.settings import ConfigError

    settings = _settings(args, worker_concurrency=args.concurrency)
    try:
        queues = parse_queues(args.queues)
    except ValueError as exc:
        raise ConfigError(f"--queues: {exc}") from exc
    if "cpu" in queues:
        _need_shares(settings)
    prepare_metrics(settings)
    _announce_nlp()
    return run_worker(settings, queues, args.pool, lambda m: print(m, flush=True))


def cmd_api(args: argparse.Namespace) -> int:
    import signal
    import threading

    from workers.query.server import check_port_free, serve_queries
    from workers.runtime import make_embedder, make_searcher, make_sparse, open_catalog, open_store
    from workers.settings import ConfigError

    settings = _settings(args, api_port=args.port)
    if settings.embedded:
        raise ConfigError(
            "'shareindex api' needs a Qdrant server (SHAREINDEX_QDRANT_URL): in Qdrant local mode "
            "the process that holds the index serves the queries ('shareindex run', or the "
            "worker of the distributed mode)"
        )
    check_port_free(settings.api_host, settings.api_port)
    embedder, sparse = make_embedder(settings), make_sparse(settings)
    store, catalog = open_store(settings), open_catalog(settings)
    try:
        embedder.warm_up()
        store.ensure_collection(embedder.model_name, embedder.dimension, sparse.tokenizer)
        searcher = make_searcher(settings, store, embedder, sparse)
        server = serve_queries(settings, searcher, catalog, local_token=False)
        print(f"query API on {server.url}", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.stop()
    finally:
        store.close()
        catalog.close()
    return EXIT_OK


def cmd_flower(args: argparse.Namespace) -> int:
    import os

    from workers.distributed.app import NO_BROKER
    from workers.settings import ConfigError

    settings = _settings(args, flower_port=args.port)
    if not settings.broker_url:
        raise ConfigError(NO_BROKER)
    env = dict(os.environ, CELERY_BROKER_URL=settings.broker_url)
    if settings.flower_basic_auth:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    elif settings.flower_host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"Flower on {settings.flower_host} needs authentication: set "
            "SHAREINDEX_FLOWER_BASIC_AUTH=user:password (or keep flower_host 127.0.0.1)"
        )
    argv = [sys.executable, "-m", "celery", "flower", f"--address={settings.flower_host}",
            f"--port={settings.flower_port}"]  # fmt: skip
    print(f"Flower on http://{settings.flower_host}:{settings.flower_port}", flush=True)
    os.execve(sys.executable, argv, env)  # broker URL and password stay out of the argv


def cmd_retry(args: argparse.Namespace) -> int:
    from workers.query.server import read_service_info
    from workers.runtime import open_catalog

    names = {spec.partition("=")[0] for spec in args.share}
    args.share = [spec for spec in args.share if "=" in spec]
    settings = _settings(args)
    catalog = open_catalog(settings)
    try:
        failed = [r for r in catalog.failed() if not names or r.share in names]
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
        result["report"] = _retry_now(settings, failed)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(
            f"{len(failed)} failed document(s) retried" + (f": {result['how']}" if failed else "")
        )
        for failure in result.get("report", {}).get("failures", []):
            print(
                f"  still failing {failure['share']}:{display(failure['path'])}: {failure['reason']}"
            )
    still = result.get("report", {}).get("documents", {}).get("failed", 0)
    return EXIT_FAILED_DOCS if still else EXIT_OK


def _retry_now(settings: Any, records: list[Any]) -> dict[str, Any]:
    import time

    from workers.runtime import open_runtime
    from workers.sync.indexer import SyncReport

    _need_shares(settings)
    runtime = open_runtime(settings, progress=_progress, warm=False)
    total = SyncReport()
    try:
        by_share: dict[str, dict[str, float]] = {}
        for r in records:
            by_share.setdefault(r.share, {})[r.path] = time.time()
        for share, paths in by_share.items():
            if share not in settings.shares:
                print(f"warning: share {share!r} is not configured; its documents stay pending",
                      file=sys.stderr)  # fmt: skip
                continue
            total.add(runtime.indexer.sync_paths(share, paths))
    finally:
        runtime.close()
    return total.to_dict()


def cmd_search(args: argparse.Namespace) -> int:
    from workers.query.client import search_client
    from workers.settings import ConfigError

    settings = _settings(args)
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

    settings = _settings(args)
    questions = load_questions(args.questions)
    with search_client(settings) as client:
        report = evaluate(
            client, questions, k=args.k, modes=args.mode or ["dense", "sparse", "hybrid"]
        )
    print(
        json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_evaluation(report)
    )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from workers.query.server import read_service_info
    from workers.runtime import open_catalog
    from workers.status import format_status, status_report

    settings = _settings(args)
    catalog = open_catalog(settings)
    try:
        info = read_service_info(settings.data_dir)
        report = status_report(catalog, {"pid": info["pid"], "url": info["url"]} if info else None)
    finally:
        catalog.close()
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_status(report))
    return EXIT_OK


def cmd_acl_explain(args: argparse.Namespace) -> int:
    from index.acl import Principal, SystemDirectory
    from workers.sources.explain import explain, format_explanation

    settings = _settings(args)
    _need_shares(settings)
    groups = set(args.group)
    if args.user and settings.expand_groups:
        groups |= SystemDirectory().groups_of(args.user)
    report = explain(settings, args.path, Principal(args.user, tuple(sorted(groups))))
    print(json.dumps(report, indent=2) if args.json else format_explanation(report))
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


def _fatal_errors() -> tuple[type[BaseException], ...]:
    from index.catalog import CatalogError
    from index.vectors import StoreError
    from ingest.stages.model_files import ModelUnavailable
    from workers.query.client import ServiceError
    from workers.settings import ConfigError

    return (ConfigError, CatalogError, StoreError, ModelUnavailable, ServiceError)


def main(argv: Sequence[str] | None = None) -> int:
    enforce_offline()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    _quiet_libraries(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _fatal_errors() as exc:
        print(f"shareindex: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("shareindex: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries(verbose: bool) -> None:
    import warnings

    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        for name in ("sentence_transformers", "transformers", "pikepdf", "httpx", "unstructured"):
            logging.getLogger(name).setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
