"""The distributed mode's commands: ``watch``, ``worker``, ``api``, ``flower``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workers.cli.common import (
    EXIT_OK,
    add_common,
    add_shares,
    announce_nlp,
    need_shares,
    settings_of,
)


def register(sub: Any) -> None:
    p = sub.add_parser("watch", help="distributed mode: watch shares, send changes to the queue")
    add_common(p)
    add_shares(p)
    p.add_argument("--poll", action="append", default=[], metavar="NAME",
                   help="watch this share by polling (network mounts: SMB, NFS); may repeat")  # fmt: skip
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("worker", help="distributed mode: a Celery worker")
    add_common(p)
    add_shares(p)
    p.add_argument("--queues", default="cpu,gpu,bulk",
                   help="queues to consume (default cpu,gpu,bulk)")  # fmt: skip
    p.add_argument("--pool", choices=["prefork", "threads"],
                   help="prefork (default with a Qdrant server) or threads (Qdrant local mode)")  # fmt: skip
    p.add_argument("--concurrency", type=int, help="pool size (default: cores; threads: 2)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("api", help="distributed mode: the query API (needs a Qdrant server)")
    add_common(p)
    p.add_argument("--port", type=int, help="port (default 8765); address: api_host")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("flower", help="Flower, the Celery monitor, on the same broker")
    add_common(p)
    p.add_argument("--port", type=int, help="port (default 5555); address: flower_host")
    p.set_defaults(func=cmd_flower)


def cmd_watch(args: argparse.Namespace) -> int:
    from workers.runtime import wait_for_catalog
    from workers.watch.distributed import WatchService

    settings = settings_of(args, polling_shares=args.poll or None)
    need_shares(settings)
    wait_for_catalog(settings, lambda m: print(m, file=sys.stderr, flush=True))
    return WatchService(settings, lambda m: print(m, flush=True)).run()


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.distributed.queues import parse_queues
    from workers.distributed.worker import prepare_metrics, run_worker
    from workers.settings import ConfigError

    settings = settings_of(args, worker_concurrency=args.concurrency)
    try:
        queues = parse_queues(args.queues)
    except ValueError as exc:
        raise ConfigError(f"--queues: {exc}") from exc
    if "cpu" in queues or "bulk" in queues:
        need_shares(settings)
    prepare_metrics(settings)  # before anything imports prometheus_client
    from workers.runtime import wait_for_catalog

    wait_for_catalog(settings, lambda m: print(m, file=sys.stderr, flush=True))
    announce_nlp()
    return run_worker(settings, queues, args.pool, lambda m: print(m, flush=True))


def cmd_api(args: argparse.Namespace) -> int:
    from workers.query.server import run_api
    from workers.runtime import wait_for_catalog

    settings = settings_of(args, api_port=args.port)
    wait_for_catalog(settings, lambda m: print(m, file=sys.stderr, flush=True))
    run_api(settings, lambda m: print(m, flush=True))
    return EXIT_OK


def cmd_flower(args: argparse.Namespace) -> int:
    from workers.distributed.flower import exec_flower

    exec_flower(settings_of(args, flower_port=args.port))
    return EXIT_OK  # exec_flower replaces this process
