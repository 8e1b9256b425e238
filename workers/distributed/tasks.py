"""The Celery tasks: thin adapters that load the message, call the indexer, record the outcome.

Retries live in one place (``run_step``): a transient error (the index, the catalog or the VLM
unreachable or busy) is retried with exponential backoff and jitter; a permanent one (bad input)
is recorded on the document and never retried; a document whose worker died under it
``max_attempts`` times is a poison document and is failed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval

from index.catalog import FAILED, INDEXED, DocumentRecord
from ingest.errors import IngestError, PagesNeedGpu, TransientError
from ingest.models import PreparedDocument
from workers import metrics
from workers.distributed.dispatch import (
    Dispatcher,
    Heartbeat,
    Ref,
    decode_prepared,
    decode_staged,
    encode_prepared,
)
from workers.distributed.dispatch import worker_id as _worker_id
from workers.distributed.queues import (
    BULK_QUEUE,
    CPU_QUEUE,
    EMBED_TASK,
    GPU_QUEUE,
    LARGE_TASK,
    PARSE_TASK,
    PLAN_TASK,
)
from workers.outages import is_transient
from workers.runtime import Runtime
from workers.settings import Settings
from workers.sync.indexer import SyncReport, WorkItem

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What one worker process holds: the models, the index, the catalog, loaded once."""

    settings: Settings
    runtime: Runtime
    dispatcher: Dispatcher
    owner: str
    heartbeat: Heartbeat

    def check_share(self, share: str) -> str:
        if share not in self.runtime.indexer.sources:
            raise ShareNotConfigured(
                f"share {share!r} is not configured on this worker ({self.owner}): "
                "give workers the same shares as the watcher"
            )
        return share

    def close(self) -> None:
        self.heartbeat.stop()
        self.runtime.close()


class ShareNotConfigured(TransientError):
    """A worker without the share: another worker may have it, or a fixed configuration."""


class Done(Exception):
    """The message needs no (more) work: ``outcome`` says why (stale: dispatched again since,
    or the document is no longer pending)."""

    def __init__(self, outcome: str = "stale") -> None:
        super().__init__(outcome)
        self.outcome = outcome


ContextFactory = Callable[[], WorkerContext]


def register_tasks(app: Celery, context: ContextFactory) -> None:
    """Bind the task names to this app; ``context`` gives the current process's WorkerContext."""
    settings: dict[str, Any] = {"bind": True, "acks_late": True}

    @app.task(name=PLAN_TASK, **settings)
    def plan(task: Task, message: dict[str, Any]) -> str:
        return run_step(task, context, "plan", message, lambda ctx: plan_share(ctx, message))

    @app.task(name=PARSE_TASK, **settings)
    def parse(task: Task, ref: Ref) -> str:
        return run_step(task, context, "parse", ref, lambda ctx: parse_document(ctx, ref))

    @app.task(name=EMBED_TASK, **settings)
    def embed(task: Task, ref: Ref) -> str:
        return run_step(task, context, "embed", ref, lambda ctx: embed_document(ctx, ref))

    @app.task(name=LARGE_TASK, **settings)
    def large(task: Task, ref: Ref) -> str:
        return run_step(task, context, "large", ref, lambda ctx: large_document(ctx, ref))


def run_step(
    task: Task, context: ContextFactory, stage: str, message: dict[str, Any],
    body: Callable[[WorkerContext], str],
) -> str:  # fmt: skip
    ctx = context()
    delivered = (task.request.delivery_info or {}).get("routing_key")
    queue = delivered or {"embed": GPU_QUEUE, "large": BULK_QUEUE}.get(stage, CPU_QUEUE)
    if "sent_at" in message and task.request.retries == 0:
        metrics.QUEUE_WAIT.labels(queue).observe(max(0.0, time.time() - message["sent_at"]))
    started = time.monotonic()
    outcome = "error"
    try:
        outcome = body(ctx)
    except Done as done:
        outcome = done.outcome
    except SoftTimeLimitExceeded:
        _fail(ctx, message, f"the {stage} step took longer than the task time limit "
              f"({ctx.settings.task_soft_time_limit_s:g} s)")  # fmt: skip
        outcome = "failed"
    except Retry:
        raise
    except Exception as exc:
        if is_transient(exc):
            outcome = "retry"
            raise _retry(task, ctx, message, exc) from exc
        # not the document's fault as far as we know (a bug, a 4xx of the index, CUDA out of
        # memory): recorded and tried again a few times, then failed with its reason
        log.exception("unexpected error in the %s step", stage)
        if task.request.retries >= ctx.settings.max_error_retries:
            _fail(ctx, message, f"the {stage} step failed {task.request.retries + 1} times with "
                  f"an unexpected error: {_reason(exc)}; fix, then 'shareindex retry --failed'")  # fmt: skip
            outcome = "failed"
        else:
            outcome = "retry"
            raise _retry(task, ctx, message, exc, "error") from exc
    finally:
        if "doc_id" in message:
            ctx.heartbeat.drop(message["doc_id"])
        metrics.STAGE_SECONDS.labels(stage).observe(time.monotonic() - started)
        metrics.TASKS.labels(stage, outcome).inc()
    return outcome


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _retry(
    task: Task, ctx: WorkerContext, message: dict[str, Any], exc: Exception,
    what: str = "retrying",
) -> Exception:  # fmt: skip
    s = ctx.settings
    countdown = get_exponential_backoff_interval(
        factor=int(max(1, s.retry_backoff_s)), retries=task.request.retries,
        maximum=int(s.retry_backoff_max_s), full_jitter=True,
    )  # fmt: skip
    reason = _reason(exc)
    log.warning("%s, retry %d in %d s: %s", "transient error" if what == "retrying" else what,
                task.request.retries + 1, countdown, reason)  # fmt: skip
    if "doc_id" in message:  # the reason shows in status; the lease covers the wait
        try:
            ctx.runtime.catalog.mark_failed(message["doc_id"], "pending", f"{what}: {reason}")
            ctx.runtime.catalog.release(message["doc_id"], message["token"], countdown + s.lease_s)
        except Exception:  # the catalog is what failed: the lease lapses, the reconciler redoes it
            log.warning("could not record the retry of %s", message["doc_id"])
    return task.retry(exc=exc, countdown=countdown, max_retries=s.max_retries)


def _fail(ctx: WorkerContext, message: dict[str, Any], reason: str) -> None:
    if "doc_id" in message:
        ctx.runtime.catalog.mark_failed(message["doc_id"], FAILED, reason)
        record = ctx.runtime.catalog.get(message["doc_id"])
        metrics.DOCUMENTS.labels(record.share if record else "", "failed").inc()


# -- the steps --------------------------------------------------------------------------------
def plan_share(ctx: WorkerContext, message: dict[str, Any]) -> str:
    share = message["share"]
    indexer = ctx.runtime.indexer
    changes = message.get("changes")
    if changes is None:
        report = indexer.sync_share(ctx.check_share(share))
    else:
        report = indexer.sync_paths(ctx.check_share(share), changes)
    log.info("planned %s: %s", share, report.to_dict()["documents"])
    return "planned"


def take_document(ctx: WorkerContext, ref: Ref) -> tuple[DocumentRecord, WorkItem]:
    catalog = ctx.runtime.catalog
    record = catalog.take(ref["doc_id"], ref["token"], ctx.owner, ctx.settings.lease_s)
    if record is None:
        raise Done()
    if record.unfinished > ctx.settings.max_attempts:
        _fail(ctx, ref, (
            f"gave up after {record.unfinished - 1} attempts: the worker processing it died each "
            "time (killed, out of memory or over the time limit); fix, then "
            "'shareindex retry --failed'"))  # fmt: skip
        raise Done("failed")
    ctx.heartbeat.hold(record.id)
    ctx.check_share(record.share)
    item = ctx.runtime.indexer.work_item(record, ref["changed_at"])
    if item is None:  # no longer a file: the plan of that path records what it is now
        catalog.release(record.id, ref["token"], ctx.settings.requeue_after_s)
        ctx.dispatcher.plan(record.share, {record.path: ref["changed_at"]})
        raise Done()
    return record, item


def parse_document(ctx: WorkerContext, ref: Ref) -> str:
    _, item = take_document(ctx, ref)
    processor = ctx.runtime.processor
    outcome = processor.parse(item)
    if isinstance(outcome, PagesNeedGpu):  # the VLM layout mode, on a cpu-queue worker
        ctx.dispatcher.parse_on_gpu(ref)
        return "to-gpu"
    if isinstance(outcome, IngestError):
        if isinstance(outcome, TransientError):
            raise outcome
        processor.record_error(item, outcome, SyncReport())
        return "failed"
    ctx.runtime.catalog.stage(
        item.doc_id, ref["token"], encode_prepared(outcome, ref["changed_at"])
    )
    ctx.dispatcher.embed(ref)
    return "parsed"


def large_document(ctx: WorkerContext, ref: Ref) -> str:
    """A large document end to end on a bulk worker: parsed in parts, embedded and written in
    slices (``DocumentProcessor.process_large``); a write error is raised for the retry."""
    _, item = take_document(ctx, ref)
    report = SyncReport()
    ctx.runtime.processor.process_large(item, report)
    return "failed" if report.failures else "indexed"


def embed_document(ctx: WorkerContext, ref: Ref) -> str:
    """Embed and commit the document, with other parsed documents that wait for this queue and
    that no worker holds taken along (batches across documents: a GPU wants large ones). Their
    own messages find them indexed and are dropped."""
    record, item = take_document(ctx, ref)
    catalog = ctx.runtime.catalog
    data = catalog.staged(record.id, ref["token"])
    if data is None:  # the staged result is gone: parse again
        catalog.release(record.id, ref["token"], 0)
        ctx.dispatcher.documents([(record.id, ref["changed_at"])])
        return "reparse"
    jobs = [(ref, item, decode_prepared(data))]
    committed = False
    try:
        take_along(ctx, jobs)
        ctx.runtime.processor.commit_many([(job, doc) for _, job, doc in jobs], SyncReport())
        committed = True
        outcome = "indexed"
        for job_ref, job, _ in jobs:
            catalog.unstage(job.doc_id)
            done = catalog.get(job.doc_id)
            if done is None or done.status != INDEXED:
                # superseded: the file changed since it was read; its own event redoes it
                catalog.release(job.doc_id, job_ref["token"], ctx.settings.requeue_after_s)
                outcome = "superseded" if job is item else outcome
        return outcome
    finally:
        for job_ref, job, _ in jobs[1:]:
            ctx.heartbeat.drop(job.doc_id)
            if not committed:  # this task retries its own document; the others are let go
                with contextlib.suppress(Exception):  # the catalog may be what failed
                    catalog.release(job.doc_id, job_ref["token"], 0)


def take_along(ctx: WorkerContext, jobs: list[tuple[Ref, WorkItem, PreparedDocument]]) -> None:
    s = ctx.settings
    chunks, want = len(jobs[0][2].chunks), 4 * s.embedding_batch
    catalog = ctx.runtime.catalog
    # a document whose worker died under it is never taken along (if it is a poison, it must
    # not take innocent documents down with it again): its own message deals with it
    waiting = catalog.staged_waiting(
        s.embed_batch_documents - 1, exclude=jobs[0][1].doc_id, max_unfinished=1
    )
    for doc_id, token in waiting:
        if chunks >= want:
            return
        record = catalog.take(doc_id, token, ctx.owner, s.lease_s)
        if record is None:  # taken by another worker meanwhile
            continue
        ctx.heartbeat.hold(doc_id)
        data = catalog.staged(doc_id, token)
        known = record.share in ctx.runtime.indexer.sources
        doc, changed_at = decode_staged(data) if data else (None, None)
        item = ctx.runtime.indexer.work_item(
            record, changed_at or record.updated_at.timestamp()
        ) if doc and known else None  # fmt: skip
        if doc is None or item is None:  # its own message deals with it
            ctx.heartbeat.drop(doc_id)
            catalog.release(doc_id, token, s.requeue_after_s)
            continue
        jobs.append(({"doc_id": doc_id, "token": token}, item, doc))
        chunks += len(doc.chunks)


# -- per-process context ----------------------------------------------------------------------
class ContextHolder:
    """Builds the WorkerContext once per process, on first use (prefork children each build
    their own after the fork: models and connections are never shared across a fork)."""

    def __init__(self, build: Callable[[], WorkerContext]) -> None:
        self._build = build
        self._context: WorkerContext | None = None
        self._lock = threading.Lock()

    def __call__(self) -> WorkerContext:
        if self._context is None:
            with self._lock:
                if self._context is None:
                    self._context = self._build()
        return self._context

    def close(self) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None


def build_context(settings: Settings, runtime: Runtime) -> WorkerContext:
    """A worker process's context around a runtime opened for the queue (``open_runtime(...,
    queue=app)``: its planner dispatches, its write errors reach the retry logic)."""
    dispatcher = runtime.dispatcher
    assert dispatcher is not None, "open the runtime with queue=app for a worker"
    owner = _worker_id()
    heartbeat = Heartbeat(runtime.catalog, owner, settings.lease_s, settings.task_time_limit_s)
    heartbeat.start()
    return WorkerContext(settings, runtime, dispatcher, owner, heartbeat)
