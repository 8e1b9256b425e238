"""The distributed mode's commands: ``watch``, ``worker``, ``api``, ``flower``.

Each imports inside its function, on purpose: ``worker`` must set up Prometheus' multiprocess
directory before anything imports prometheus_client (``workers.runtime`` does), and each of the
four loads a different stack (watchdog and the planner; Celery and the model; FastAPI; Flower)."""

from __future__ import annotations

import argparse
import sys

from workers.cli import EXIT_OK
from workers.cli.common import announce_nlp, need_shares, settings_of


def cmd_watch(args: argparse.Namespace) -> int:
    from workers.components import opening, wait_for_catalog
    from workers.watch.distributed import WatchService

    settings = settings_of(args, polling_shares=args.poll or None)
    need_shares(settings)
    wait_for_catalog(settings, lambda m: print(m, file=sys.stderr, flush=True))
    service = opening(settings, lambda: WatchService(settings, lambda m: print(m, flush=True)),
                      lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
    return service.run()


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
    from workers.components import wait_for_catalog

    wait_for_catalog(settings, lambda m: print(m, file=sys.stderr, flush=True))
    announce_nlp()
    return run_worker(settings, queues, args.pool, lambda m: print(m, flush=True))


def cmd_api(args: argparse.Namespace) -> int:
    from workers.components import wait_for_catalog
    from workers.query.server import run_api

    settings = settings_of(args, api_port=args.port)
    wait_for_catalog(settings, lambda m: print(m, file=sys.stderr, flush=True))
    run_api(settings, lambda m: print(m, flush=True))
    return EXIT_OK


def cmd_flower(args: argparse.Namespace) -> int:
    from workers.distributed.flower import exec_flower

    exec_flower(settings_of(args, flower_port=args.port))
    return EXIT_OK  # exec_flower replaces this process
