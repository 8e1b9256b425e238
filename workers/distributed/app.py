"""The Celery application of the distributed mode, built from the settings (nothing is read
from the environment at import time).

Delivery: a message is acknowledged only after its task ran (``acks_late``), and a worker that
dies mid-task puts it back (``task_reject_on_worker_lost``); each process reserves one message
at a time (prefetch 1). A whole worker killed with -9 leaves its message with Redis until the
visibility timeout: the catalog's leases (workers/distributed.py) bring the document back long
before that.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from workers.distributed.queues import CPU_QUEUE, QUEUES, ROUTES
from workers.settings import ConfigError, Settings

NO_BROKER = (
    "no broker: set SHAREINDEX_BROKER_URL (a Redis URL such as redis://127.0.0.1:6379/0) for "
    "the distributed mode, or use 'shareindex run', the embedded mode, which needs none"
)


def make_celery(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ConfigError(NO_BROKER)
    if not settings.broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        raise ConfigError(
            f"broker_url must be a Redis URL (redis://...), not {settings.broker_url.split(':')[0]}"
        )
    app = Celery("shareindex", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        # each queue its own exchange and key: a message reaches exactly the queue it is routed to
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES
        ],
        task_default_exchange=CPU_QUEUE,
        task_default_routing_key=CPU_QUEUE,
        task_default_queue=CPU_QUEUE,
        task_routes=ROUTES,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_per_child_mb * 1024,  # KiB
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        # Flower sees tasks and workers
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    if settings.broker_url.startswith("redis://"):  # kombu's, fixed (workers/distributed/broker.py)
        app.conf.broker_transport = "workers.distributed.broker:Transport"
    return app
