"""The distributed mode's bookkeeping: dispatching documents, worker leases, the reconciler.

The catalog is the durable record; Redis is transport. Each dispatch of a pending document gets a
fresh token in the catalog and travels in the message; a message whose token is no longer the
document's is stale and dropped, so dispatching again never makes two workers do the same work.
A worker that takes a document holds a lease that its heartbeat renews; when a lease runs out
(the worker was killed, or the queue lost the message), the reconciler dispatches it again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError

from index.catalog import Catalog
from ingest.models import Chunk, Member, ParsedDocument, PreparedDocument, SourceFile
from ingest.stages.members import is_container
from workers.distributed.queues import (
    BULK_QUEUE,
    EMBED_TASK,
    GPU_QUEUE,
    LARGE_TASK,
    PARSE_TASK,
    PLAN_TASK,
    QUEUES,
)
from workers.settings import Settings
from workers.sync.report import SyncReport
from workers.sync.work import WorkItem

log = logging.getLogger(__name__)

#: a message: a reference to a document, never its content
Ref = dict[str, Any]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- staged parse results (catalog rows, referenced by the embed message) ---------------------
def encode_prepared(doc: PreparedDocument, changed_at: float | None = None) -> bytes:
    """The chunks and the file facts a commit needs, and when the change happened (freshness);
    the elements stay behind. A container's members come along, each the same way."""
    body = {**_body(doc), "changed_at": changed_at}
    return zlib.compress(json.dumps(body, ensure_ascii=False).encode("utf-8"), 3)


def _body(doc: PreparedDocument) -> dict[str, Any]:
    source = {k: v for k, v in asdict(doc.source).items() if k != "known_members"}
    body: dict[str, Any] = {
        "source": source,
        "parsed": {k: v for k, v in asdict(doc.parsed).items() if k != "elements"},
        "chunks": [asdict(c) for c in doc.chunks],
    }
    if doc.members is not None:
        body["members"] = [
            {
                "address": m.address,
                "size": m.size,
                "content_hash": m.content_hash,
                "error": m.error,
                "document": _body(m.document) if m.document else None,
            }  # fmt: skip
            for m in doc.members
        ]
    return body


def decode_prepared(data: bytes) -> PreparedDocument:
    return decode_staged(data)[0]


def decode_staged(data: bytes) -> tuple[PreparedDocument, float | None]:
    body = json.loads(zlib.decompress(data))
    return _document(body), body.get("changed_at")


def _document(body: dict[str, Any]) -> PreparedDocument:
    chunks = tuple(
        Chunk(**{**c, "page_numbers": tuple(c["page_numbers"]), "kinds": tuple(c["kinds"])})
        for c in body["chunks"]
    )
    members = None
    if "members" in body:
        members = tuple(
            Member(
                m["address"],
                m["size"],
                m["content_hash"],
                _document(m["document"]) if m["document"] else None,
                tuple(m["error"]) if m["error"] else None,
            )  # fmt: skip
            for m in body["members"]
        )
    return PreparedDocument(
        source=SourceFile(**body["source"]),
        parsed=ParsedDocument(**body["parsed"], elements=()),
        chunks=chunks,
        members=members,
    )


# -- sending --------------------------------------------------------------------------------
class Dispatcher:
    """Puts work on the queues; the catalog learns of a dispatch before the broker does."""

    def __init__(self, app: Celery, catalog: Catalog, settings: Settings) -> None:
        self.app = app
        self.catalog = catalog
        self.wait_s = settings.requeue_after_s
        self.large_bytes = settings.large_bytes
        self.live_max_files = settings.live_max_files

    def plan(self, share: str, changes: dict[str, float] | None) -> None:
        """Compare a share (``changes`` None) or some of its paths with the catalog."""
        message = {"share": share, "changes": changes, "sent_at": time.time()}
        self.app.send_task(PLAN_TASK, args=[message])

    def documents(self, docs: Iterable[tuple[str, float]], route: str = "cpu") -> int:
        """Process these pending documents (doc id, wall time of the change); returns how many.
        ``route``: "cpu" (parse on the cpu queue), "bulk" (parse on the bulk queue) or "large"
        (the whole large-document task on the bulk queue)."""
        sent = 0
        for doc_id, changed_at in docs:
            token = self.catalog.dispatch(doc_id, self.wait_s)
            if token is None:  # no longer pending
                continue
            ref = {
                "doc_id": doc_id,
                "token": token,
                "changed_at": changed_at,
                "sent_at": time.time(),
            }
            if route == "large":
                self.app.send_task(LARGE_TASK, args=[ref], queue=BULK_QUEUE)
            elif route == "bulk":
                self.app.send_task(PARSE_TASK, args=[ref], queue=BULK_QUEUE)
            else:
                self.app.send_task(PARSE_TASK, args=[ref])
            sent += 1
        return sent

    def sink(self, items: list[WorkItem], report: SyncReport, share: str) -> None:
        """The planner's documents, handed to the queues by size (the distributed mode's
        ``WorkSink``): large documents and containers to the bulk queue, and a bulk arrival's
        small documents too; the small documents of a few changes to the cpu queue."""
        large = [
            i for i in items if i.entry.size >= self.large_bytes and not is_container(i.entry.path)
        ]
        rest = [i for i in items if i not in large]
        containers = [i for i in rest if is_container(i.entry.path)]
        small = [i for i in rest if i not in containers]
        if len(small) > self.live_max_files:
            containers, small = containers + small, []
        self.documents(((i.doc_id, i.changed_at) for i in large), "large")
        self.documents(((i.doc_id, i.changed_at) for i in containers), "bulk")
        self.documents((i.doc_id, i.changed_at) for i in small)

    def parse_on_gpu(self, ref: Ref) -> None:
        """A document with pages for the VLM (layout mode) is parsed by a gpu-queue worker."""
        self.catalog.release(ref["doc_id"], ref["token"], self.wait_s)
        self.app.send_task(PARSE_TASK, args=[{**ref, "sent_at": time.time()}], queue=GPU_QUEUE)

    def embed(self, ref: Ref) -> None:
        """The parsed document waits for the gpu queue, owned by nobody meanwhile."""
        self.catalog.release(ref["doc_id"], ref["token"], self.wait_s)
        self.app.send_task(EMBED_TASK, args=[{**ref, "sent_at": time.time()}])


def queued_messages(app: Celery) -> int:
    """Messages waiting in the ShareIndex queues (not counting those a worker has reserved)."""
    total = 0
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        for name in QUEUES:
            try:
                total += channel.queue_declare(queue=name, passive=True).message_count
            except ChannelError:  # never declared, or lost with a flushed Redis
                continue
    return total


class Requeuer:
    """Dispatches again the pending documents whose lease ran out: a worker that died holding
    them, or a message the broker lost (Redis restarted without persistence, a flushed queue).
    And plans again, when the queues are idle, the documents whose captions have waited for the
    VLM longer than ``wait_s`` (indexed with their text while it was down).

    A document waiting in a queue is only lost if the queues are empty: while messages wait, a
    long queue is a normal backlog, and dispatching again would only add stale messages.
    """

    def __init__(
        self, catalog: Catalog, dispatcher: Dispatcher, queued: Callable[[], int],
        wait_s: float = 120,
    ) -> None:  # fmt: skip
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.queued = queued
        self.wait_s = wait_s

    def run_once(self) -> int:
        idle: bool | None = None

        def queues_idle() -> bool:
            nonlocal idle
            if idle is None:
                idle = self.queued() == 0
            return idle

        again = [
            record
            for record in self.catalog.expired()
            # a worker died holding it, or it was never sent; a message waiting in a queue
            # (dispatched, no owner) is lost only if the queues are empty
            if record.lease_owner is not None or record.dispatch_token is None or queues_idle()
        ]
        sent = self.dispatcher.documents((r.id, r.updated_at.timestamp()) for r in again)
        if sent:
            log.warning("dispatched %d pending document(s) again (lease expired)", sent)
        captions = self.catalog.captions_due(self.wait_s)
        if captions and queues_idle():
            by_share: dict[str, dict[str, float]] = {}
            for record in captions:
                by_share.setdefault(record.share, {})[record.path] = time.time()
            for share, paths in by_share.items():
                self.dispatcher.plan(share, paths)
            log.info("captions of %d document(s) tried again", len(captions))
        return sent


# -- the worker side --------------------------------------------------------------------------
class Heartbeat:
    """Renews the leases of the documents this worker process is working on, each for at most
    ``limit_s`` (the hard task time limit). Past it the lease lapses and the requeuer gives the
    document to another worker: the threads pool cannot stop a hung task, and a lease renewed for
    ever would hold its document for ever. (A prefork child over the limit is killed, and its
    heartbeat with it.)"""

    def __init__(self, catalog: Catalog, owner: str, lease_s: float, limit_s: float) -> None:
        self.catalog = catalog
        self.owner = owner
        self.lease_s = lease_s
        self.limit_s = limit_s
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def hold(self, doc_id: str) -> None:
        """A task took this document: renew its lease from now on."""
        with self._lock:
            self._held[doc_id] = time.monotonic()

    def drop(self, doc_id: str) -> None:
        with self._lock:
            self._held.pop(doc_id, None)

    def beat(self) -> int:
        """Renew the leases of the documents held within the time limit; returns how many."""
        now = time.monotonic()
        with self._lock:
            overdue = [d for d, since in self._held.items() if now - since > self.limit_s]
            for doc_id in overdue:
                del self._held[doc_id]
            live = list(self._held)
        for doc_id in overdue:
            log.error("document %s: its task ran past the time limit (%g s); its lease lapses "
                      "and another worker takes it", doc_id, self.limit_s)  # fmt: skip
        return self.catalog.heartbeat(self.owner, self.lease_s, live)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.beat()
            except Exception:  # the catalog is down: the leases lapse, the work is redone
                log.exception("lease heartbeat failed")
