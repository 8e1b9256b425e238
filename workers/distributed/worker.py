"""``shareindex worker``: a Celery worker of the distributed mode.

Models, the index client and the catalog load once per worker process: in each prefork child
after the fork (``worker_process_init``), or once in the main process for the threads pool.
With Qdrant in local mode only one process may hold the index: the worker then runs a threads
pool, consumes both queues, and serves the query API itself (``service.json`` points the CLI at
it), since no other process can open the index.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from workers.distributed.queues import QUEUES
from workers.settings import ConfigError, Settings

log = logging.getLogger(__name__)

LOCAL_MODE_POOL = (
    "Qdrant local mode (SHAREINDEX_QDRANT_URL unset): one process only can hold the index, so "
    "the worker runs a threads pool (--pool threads) and serves the queries itself; set "
    "SHAREINDEX_QDRANT_URL to a Qdrant server to run prefork workers, or several workers"
)


def metrics_dir(settings: Settings) -> Path:
    return settings.data_dir / "metrics" / f"worker-{os.getpid()}"


def prepare_metrics(settings: Settings) -> Path:
    """Prometheus multiprocess mode: each pool process writes its own files, the main process
    serves their sum. Must run before prometheus_client is imported."""
    import sys

    if "prometheus_client" in sys.modules:
        raise RuntimeError("prepare_metrics must run before prometheus_client is imported")
    path = metrics_dir(settings)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def choose_pool(settings: Settings, queues: list[str], pool: str | None) -> tuple[str, int]:
    """The pool and its size, or a ConfigError for a combination that cannot work."""
    pool = pool or settings.worker_pool
    if settings.embedded:
        if pool == "prefork":
            raise ConfigError(LOCAL_MODE_POOL)
        if set(queues) != set(QUEUES):
            raise ConfigError(
                "Qdrant local mode: the one worker that can hold the index must consume every "
                f"queue (--queues {','.join(QUEUES)}); set SHAREINDEX_QDRANT_URL to split them"
            )
        pool = "threads"
    pool = pool or "prefork"
    size = settings.worker_concurrency or (os.cpu_count() or 1 if pool == "prefork" else 2)
    return pool, size


def run_worker(settings: Settings, queues: list[str], pool: str | None, say: Any = print) -> int:
    from celery import signals

    from workers.distributed.app import make_celery
    from workers.distributed.tasks import ContextHolder, build_context, register_tasks

    pool_name, size = choose_pool(settings, queues, pool)
    app = make_celery(settings)

    def build() -> Any:
        return build_context(settings, open_worker_runtime(settings, queues, pool_name, app))

    holder = ContextHolder(build)
    register_tasks(app, holder)
    api = None
    if pool_name == "threads":
        say("loading the embedding model and the index..." if "gpu" in queues else
            "opening the index and the catalog...")  # fmt: skip
        from workers.components import opening

        # the catalog may go away again just after the command saw it answer: waited for too
        context = opening(settings, holder, lambda m: say(f"starting: {m}"))
        if settings.embedded:
            from workers.query.server import serve_queries

            api = serve_queries(settings, context.runtime.searcher, context.runtime.catalog)
            say(f"query API on {api.url} (this worker holds the index)")
    else:
        signals.worker_process_init.connect(lambda **_: holder(), weak=False)
        signals.worker_process_shutdown.connect(
            lambda pid=None, **_: _process_gone(holder, pid), weak=False
        )
    _serve_metrics(settings, say)
    name = f"{'-'.join(queues)}.{os.getpid()}@%h"
    say(f"worker {name}: queues {','.join(queues)}, {pool_name} pool of {size}")
    argv = ["worker", f"--queues={','.join(queues)}", f"--pool={pool_name}",
            f"--concurrency={size}", f"--hostname={name}", "--loglevel=INFO", "--without-mingle"]  # fmt: skip
    try:
        app.worker_main(argv)
    finally:
        if api is not None:
            api.stop()
        holder.close()
    return 0


def open_worker_runtime(settings: Settings, queues: list[str], pool_name: str, app: Any) -> Any:
    """The components one worker process needs for its queues."""
    from workers.runtime import open_runtime

    gpu = "gpu" in queues
    # a prefork child parses in itself: it may not start processes, and it is contained already
    parsing: Literal["pool", "inline", "none"] = "inline" if pool_name == "prefork" else "pool"
    if "cpu" not in queues and "bulk" not in queues and not settings.vlm_layout_mode:
        parsing = "none"  # the layout mode parses documents with scanned pages on the gpu queue
    # a worker without the gpu or bulk queue never embeds (its processes never load the model)
    # and never sends pages to the VLM: a document that needs it goes to the gpu queue. A bulk
    # worker embeds the large documents it writes in slices
    warm = gpu or "bulk" in queues
    return open_runtime(settings, parsing=parsing, warm=warm, transcribe=gpu, queue=app)


def _process_gone(holder: Any, pid: int | None) -> None:
    from prometheus_client import multiprocess

    holder.close()
    multiprocess.mark_process_dead(pid or os.getpid())


def _serve_metrics(settings: Settings, say: Any) -> None:
    if not settings.worker_metrics_port:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    from workers.components import open_catalog, opening
    from workers.metrics import BacklogCollector

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(BacklogCollector(opening(settings, lambda: open_catalog(settings),
                                               lambda m: say(f"metrics: {m}")).pending_since))  # fmt: skip
    try:
        start_http_server(settings.worker_metrics_port, registry=registry)
    except OSError as exc:
        say(f"warning: metrics not served: port {settings.worker_metrics_port}: {exc.strerror}")
        return
    say(f"metrics on :{settings.worker_metrics_port}/metrics")
