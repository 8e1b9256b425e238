"""The distributed mode's bookkeeping against a real catalog and a real Redis: dispatch tokens,
leases, the requeuer's rules, the poison limit, the retry classification, the staged format."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from index.catalog import FAILED, Catalog, SqlCatalog
from index.permissions.rules import RuleBook
from index.vectors import IndexUnavailable
from ingest.errors import CorruptDocument, FileChanged, PagesNeedGpu
from ingest.models import Chunk, ParsedDocument, PreparedDocument, SourceFile
from tests.fakes import MemoryIndex
from workers.distributed.app import make_celery
from workers.distributed.dispatch import (
    Dispatcher,
    Heartbeat,
    Requeuer,
    decode_prepared,
    encode_prepared,
    queued_messages,
)
from workers.distributed.queues import LARGE_TASK, PARSE_TASK
from workers.distributed.tasks import (
    Done,
    WorkerContext,
    embed_document,
    is_transient,
    large_document,
    parse_document,
    run_step,
    take_document,
)
from workers.settings import load_settings
from workers.sources import open_sources
from workers.sync.indexer import Indexer
from workers.sync.planner import Planner


def context_for(tmp_path: Path, redis_url: str, **overrides: Any) -> tuple[Any, Catalog]:
    """A worker context with a real catalog and broker, without models or an index."""
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    settings = load_settings(broker_url=redis_url, data_dir=str(tmp_path / "data"),
                             shares={"docs": str(share)}, **overrides)  # fmt: skip
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    dispatcher = Dispatcher(make_celery(settings), catalog, settings)
    planner = Planner(catalog, MemoryIndex(), dispatcher.sink, ignore=[], max_file_bytes=10**6)
    indexer = Indexer(open_sources(settings, RuleBook()), planner, None)
    runtime = SimpleNamespace(catalog=catalog, indexer=indexer, processor=StepsDouble())
    heartbeat = Heartbeat(catalog, "test:1", settings.lease_s, settings.task_time_limit_s)
    ctx = WorkerContext(settings, runtime, dispatcher, "test:1", heartbeat)  # type: ignore[arg-type]
    return ctx, catalog


class StepsDouble:
    """The model-bound steps of a worker (parse, embed and commit), given by each test: these
    tests are about the bookkeeping around them."""

    def parse(self, item: Any) -> Any:
        raise AssertionError("this test does not parse")

    def commit_many(self, ready: list[Any], report: Any) -> None:
        raise AssertionError("this test does not commit")

    def record_error(self, item: Any, error: Any, report: Any) -> None:
        raise AssertionError("this test records no error")


def test_a_redispatch_makes_the_older_message_stale(tmp_path: Path, redis_url: str) -> None:
    ctx, catalog = context_for(tmp_path, redis_url)
    (tmp_path / "share" / "x.txt").write_text("text\n")
    catalog.upsert_seen("d1", "docs", "x.txt", 5, 1, [])
    old = catalog.dispatch("d1", 60)
    new = catalog.dispatch("d1", 60)
    assert old and new and old != new
    with pytest.raises(Done):
        take_document(ctx, {"doc_id": "d1", "token": old, "changed_at": 0.0})
    record, item = take_document(ctx, {"doc_id": "d1", "token": new, "changed_at": 0.0})
    assert record.lease_owner == "test:1" and item.entry.path == "x.txt"


def test_worker_death_limit_fails_a_poison_document(tmp_path: Path, redis_url: str) -> None:
    """A document whose worker dies under it every time ends failed after max_attempts takes."""
    ctx, catalog = context_for(tmp_path, redis_url, max_attempts=2)
    (tmp_path / "share" / "x.txt").write_text("a document its workers never finish\n")
    catalog.upsert_seen("d1", "docs", "x.txt", 1, 1, [])
    for _ in range(2):  # two takes that never finish: the worker died each time
        token = catalog.dispatch("d1", 60)
        assert token is not None
        take_document(ctx, {"doc_id": "d1", "token": token, "changed_at": 0.0})
    token = catalog.dispatch("d1", 60)
    with pytest.raises(Done):
        take_document(ctx, {"doc_id": "d1", "token": token, "changed_at": 0.0})
    doc = catalog.get("d1")
    assert doc is not None and doc.status == FAILED and "died" in (doc.error or "")


def test_a_finished_step_resets_the_death_count(tmp_path: Path, redis_url: str) -> None:
    ctx, catalog = context_for(tmp_path, redis_url, max_attempts=1)
    (tmp_path / "share" / "x.txt").write_text("text\n")
    catalog.upsert_seen("d1", "docs", "x.txt", 1, 1, [])
    for _ in range(3):  # each take ends (the next step is queued): never a poison
        token = catalog.dispatch("d1", 60)
        take_document(ctx, {"doc_id": "d1", "token": token, "changed_at": 0.0})
        assert catalog.release("d1", token, 60)
    assert catalog.get("d1").status == "pending"  # type: ignore[union-attr]


def test_heartbeat_extends_only_the_owners_leases(tmp_path: Path, redis_url: str) -> None:
    _, catalog = context_for(tmp_path, redis_url)
    for doc in ("a", "b"):
        catalog.upsert_seen(doc, "docs", f"{doc}.txt", 1, 1, [])
    ta, tb = catalog.dispatch("a", 60), catalog.dispatch("b", 60)
    catalog.take("a", ta, "w1", lease_s=-1)  # already lapsed
    catalog.take("b", tb, "w2", lease_s=-1)
    assert catalog.heartbeat("w1", 30, ["a", "b"]) == 1
    assert [r.id for r in catalog.expired()] == ["b"]


def test_a_task_past_the_time_limit_loses_its_lease(tmp_path: Path, redis_url: str) -> None:
    """The threads pool cannot stop a hung task: its heartbeat stops renewing the lease after
    the hard time limit, so that the requeuer gives the document to another worker."""
    _, catalog = context_for(tmp_path, redis_url)
    for doc in ("hung", "busy"):
        catalog.upsert_seen(doc, "docs", f"{doc}.txt", 1, 1, [])
        catalog.take(doc, catalog.dispatch(doc, 60), "w1", lease_s=-1)
    heartbeat = Heartbeat(catalog, "w1", lease_s=30, limit_s=0.5)
    heartbeat.hold("hung")
    time.sleep(0.6)
    heartbeat.hold("busy")
    assert heartbeat.beat() == 1  # only the task within its limit is renewed
    assert [r.id for r in catalog.expired()] == ["hung"]
    heartbeat.drop("busy")
    assert heartbeat.beat() == 0


def test_an_unexpected_error_is_retried_then_failed_with_its_reason(
    tmp_path: Path, redis_url: str
) -> None:
    """Not bad input, not an outage (a bug, a 4xx of the index): the document is not left
    pending under a lease for ever; it is tried max_error_retries more times, then failed."""
    ctx, catalog = context_for(tmp_path, redis_url, max_error_retries=2, retry_backoff_s=1)
    (tmp_path / "share" / "x.txt").write_text("text\n")
    catalog.upsert_seen("d1", "docs", "x.txt", 5, 1, [])
    app = ctx.dispatcher.app
    app.conf.task_always_eager = True  # retries run at once, in this process
    calls: list[int] = []

    def body(_: Any) -> str:
        take_document(
            ctx, {"doc_id": "d1", "token": catalog.get("d1").dispatch_token, "changed_at": 0}
        )  # type: ignore[union-attr]
        calls.append(1)
        raise RuntimeError("the embedder returned no vector")

    @app.task(bind=True, name="test.broken")
    def broken(task: Any, ref: dict[str, Any]) -> str:
        return run_step(task, lambda: ctx, "embed", ref, body)

    catalog.dispatch("d1", 60)
    token = catalog.get("d1").dispatch_token  # type: ignore[union-attr]
    broken.apply(args=[{"doc_id": "d1", "token": token, "changed_at": 0.0}])
    doc = catalog.get("d1")
    assert doc is not None and len(calls) == 3
    assert doc.status == FAILED and doc.lease_owner is None
    assert "unexpected error: RuntimeError: the embedder returned no vector" in (doc.error or "")
    assert ctx.heartbeat.beat() == 0  # nothing held any more


def test_requeuer_rules(tmp_path: Path, redis_url: str) -> None:
    ctx, catalog = context_for(tmp_path, redis_url)
    broker = redis.Redis.from_url(redis_url)
    app = ctx.dispatcher.app
    requeuer = Requeuer(catalog, ctx.dispatcher, lambda: queued_messages(app))
    for doc in ("never", "waiting", "lost", "dead"):
        catalog.upsert_seen(doc, "docs", f"{doc}.txt", 1, 1, [])
    catalog.dispatch("waiting", 60)  # its message is (as far as anyone knows) in the queue
    catalog.dispatch("lost", -1)  # waited its time in the queue
    catalog.take("dead", catalog.dispatch("dead", 60), "gone:1", lease_s=-1)  # worker died
    broker.rpush("cpu", b"a message of another document")  # the queue is busy

    # busy queue: a lapsed wait is a backlog, not a loss; the dead worker's document goes again
    assert requeuer.run_once() == 2
    assert {r.id for r in catalog.expired()} == {"lost"}
    assert catalog.get("never").dispatch_token and catalog.get("dead").lease_owner is None  # type: ignore[union-attr]

    broker.delete("cpu")  # the queue is empty: the lost message is sent again
    assert requeuer.run_once() == 1
    assert catalog.expired() == []
    assert broker.llen("cpu") == 1
    assert catalog.get("waiting").status == "pending"  # type: ignore[union-attr]


def test_requeuer_plans_captions_that_waited_for_the_vlm(tmp_path: Path, redis_url: str) -> None:
    """Indexed with their text while the VLM was down: planned again once they have waited
    ``wait_s`` and the queues are idle (the plan parses from the cache and adds the captions)."""
    ctx, catalog = context_for(tmp_path, redis_url)
    broker = redis.Redis.from_url(redis_url)
    app = ctx.dispatcher.app
    for doc in ("old", "recent", "done"):
        catalog.upsert_seen(doc, "docs", f"{doc}.pdf", 1, 1, [])
        catalog.mark_indexed(doc, 1, "h" * 64, 3, 1, "pdf")
    catalog.set_captions("old", "pending")
    catalog.set_captions("done", "captioned")
    time.sleep(1.2)
    catalog.set_captions("recent", "pending")
    requeuer = Requeuer(catalog, ctx.dispatcher, lambda: queued_messages(app), wait_s=1)
    broker.rpush("cpu", b"a message of another document")  # busy: not now
    requeuer.run_once()
    assert broker.llen("cpu") == 1
    broker.delete("cpu")
    requeuer.run_once()
    [raw] = broker.lrange("cpu", 0, -1)
    (message,), _, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
    assert message["share"] == "docs" and list(message["changes"]) == ["old.pdf"]


def test_a_document_for_the_vlm_goes_from_the_cpu_to_the_gpu_queue(
    tmp_path: Path, redis_url: str
) -> None:
    """The VLM layout mode: a cpu worker that finds pages to transcribe sends the document's
    parse to the gpu queue, with the same dispatch token, and lets go of it."""
    ctx, catalog = context_for(tmp_path, redis_url)
    broker = redis.Redis.from_url(redis_url)
    (tmp_path / "share" / "scan.pdf").write_bytes(b"%PDF- a scan")
    catalog.upsert_seen("d1", "docs", "scan.pdf", 12, 1, [])
    token = catalog.dispatch("d1", 60)
    ctx.runtime.processor.parse = lambda item: PagesNeedGpu("pages for the VLM")
    ref = {"doc_id": "d1", "token": token, "changed_at": 0.0}
    assert parse_document(ctx, ref) == "to-gpu"
    [raw] = broker.lrange("gpu", 0, -1)
    envelope = json.loads(raw)
    (message,), _, _ = json.loads(base64.b64decode(envelope["body"]))
    assert envelope["headers"]["task"] == PARSE_TASK
    assert message["doc_id"] == "d1" and message["token"] == token
    assert broker.llen("cpu") == 0
    assert catalog.get("d1").lease_owner is None  # type: ignore[union-attr]
    assert take_document(ctx, ref)[0].id == "d1"  # the gpu worker takes it with the same token


def test_an_embed_task_takes_waiting_documents_along(tmp_path: Path, redis_url: str) -> None:
    """Parsed documents that wait for the gpu queue and that no worker holds are embedded in the
    same batches as the task's own; one held by another worker, or with a stale token, is not.
    Their own messages then find them indexed and are dropped."""
    ctx, catalog = context_for(tmp_path, redis_url)
    tokens = _staged_docs(tmp_path, catalog, ["own", "w1", "w2", "held", "stale"], 123.0)
    catalog.take("held", tokens["held"], "other:9", 60)  # another worker embeds it now
    catalog.stage("stale", "an-older-token", encode_prepared(_prepared(tmp_path, "stale")))
    committed: list[list[str]] = []

    def commit_many(ready: list[Any], report: Any) -> None:
        committed.append([item.doc_id for item, _ in ready])
        for item, doc in ready:
            assert item.changed_at == 123.0
            catalog.mark_indexed(item.doc_id, 1, doc.parsed.content_hash, 9, 1, "text")

    ctx.runtime.processor.commit_many = commit_many
    own = {"doc_id": "own", "token": tokens["own"], "changed_at": 123.0}
    assert embed_document(ctx, own) == "indexed"
    assert committed == [["own", "w1", "w2"]]
    assert catalog.get("held").status == "pending"  # type: ignore[union-attr]
    assert catalog.staged_waiting(10) == []  # what was taken along is unstaged
    with pytest.raises(Done):  # w1's own message: indexed already, dropped
        take_document(ctx, {"doc_id": "w1", "token": tokens["w1"], "changed_at": 0.0})
    assert set(ctx.heartbeat._held) == {"own"}  # those taken along are let go (run_step drops own)


def _prepared(tmp_path: Path, doc: str) -> PreparedDocument:
    return PreparedDocument(
        SourceFile("docs", str(tmp_path / "share"), f"{doc}.txt", 9, 1),
        ParsedDocument("h" * 64, 9, 1, (), "text"), (Chunk(0, f"{doc} text", "text"),),
    )  # fmt: skip


def _staged_docs(
    tmp_path: Path, catalog: Any, names: list[str], changed_at: float = 1.0
) -> dict[str, str]:
    """Each document seen, dispatched and staged as parsed (waiting for the gpu queue)."""
    tokens = {}
    for doc in names:
        (tmp_path / "share" / f"{doc}.txt").write_text(f"{doc} text\n")
        catalog.upsert_seen(doc, "docs", f"{doc}.txt", 9, 1, [])
        tokens[doc] = catalog.dispatch(doc, 60)
        catalog.stage(
            doc, tokens[doc], encode_prepared(_prepared(tmp_path, doc), changed_at=changed_at)
        )
    return tokens


def test_a_document_whose_worker_died_is_never_taken_along(tmp_path: Path, redis_url: str) -> None:
    """A suspected poison document (its worker died under it) is left to its own message: taken
    along again, it would take the task's own document down with it each time."""
    ctx, catalog = context_for(tmp_path, redis_url)
    tokens = _staged_docs(tmp_path, catalog, ["own", "suspect", "fine"])
    catalog.take("suspect", tokens["suspect"], "dead:1", -1)  # a worker died holding it
    committed: list[list[str]] = []
    ctx.runtime.processor.commit_many = lambda ready, report: committed.append(
        [item.doc_id for item, _ in ready]
    )
    embed_document(ctx, {"doc_id": "own", "token": tokens["own"], "changed_at": 1.0})
    assert committed == [["own", "fine"]]


def test_a_failed_batch_lets_go_of_what_it_took_along(tmp_path: Path, redis_url: str) -> None:
    """The write fails (the index is down): the task's own document is retried by the task, the
    documents it took along are released at once for their own messages, not held until their
    leases run out."""
    ctx, catalog = context_for(tmp_path, redis_url)
    tokens = _staged_docs(tmp_path, catalog, ["own", "w1", "w2"])

    def failing(ready: list[Any], report: Any) -> None:
        raise IndexUnavailable("the index is down")

    ctx.runtime.processor.commit_many = failing
    with pytest.raises(IndexUnavailable):
        embed_document(ctx, {"doc_id": "own", "token": tokens["own"], "changed_at": 1.0})
    for doc in ("w1", "w2"):
        record = catalog.get(doc)
        assert record is not None and record.lease_owner is None and record.status == "pending"
        assert take_document(ctx, {"doc_id": doc, "token": tokens[doc], "changed_at": 0.0})
    assert catalog.get("own").lease_owner == "test:1"  # type: ignore[union-attr]


def test_transient_and_permanent_errors() -> None:
    from qdrant_client.http.exceptions import UnexpectedResponse

    def unexpected(code: int) -> Exception:
        return UnexpectedResponse(code, "x", b"", None)  # type: ignore[arg-type]

    for exc in (sqlite3.OperationalError("database is locked"), ConnectionError(), TimeoutError(),
                IndexUnavailable("down"), FileChanged("moving"), unexpected(503),
                redis.ConnectionError("refused")):  # fmt: skip
        assert is_transient(exc), exc
    for exc in (CorruptDocument("bad"), ValueError("bug"), KeyError("x"), unexpected(400)):
        assert not is_transient(exc), exc


def test_staged_documents_round_trip() -> None:
    doc = PreparedDocument(
        source=SourceFile("docs", "/srv", "a/b.pdf", 10, 123),
        parsed=ParsedDocument("h" * 64, 10, 123, (), "pdf"),
        chunks=(
            Chunk(0, "見出し\n本文です。", "text", (1, 2), "見出し", ("title", "text"), 12),
            Chunk(1, "| a | b |", "table", (2,), None, ("table",), 5),
        ),  # fmt: skip
    )
    assert decode_prepared(encode_prepared(doc)) == doc


@pytest.mark.parametrize(("queues", "loaded"), [(["cpu"], False), (["cpu", "gpu"], True)])
def test_only_a_worker_of_the_gpu_queue_loads_the_model(
    tmp_path: Path, redis_url: str, queues: list[str], loaded: bool
) -> None:
    from workers.distributed.worker import open_worker_runtime

    settings = load_settings(data_dir=str(tmp_path / "data"), broker_url=redis_url)
    runtime = open_worker_runtime(settings, queues, "threads", make_celery(settings))
    try:
        assert (runtime.embedder._model is not None) is loaded
    finally:
        runtime.close()


def _queued(broker: Any, queue: str, tokens: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(task name, doc id) of each message in a queue; ``tokens`` gets doc id -> token."""
    out = []
    for raw in broker.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        (message,), _, _ = json.loads(base64.b64decode(envelope["body"]))
        out.append((envelope["headers"]["task"], message["doc_id"]))
        if tokens is not None:
            tokens[message["doc_id"]] = message["token"]
    return out


def test_large_documents_containers_and_bulk_arrivals_go_to_the_bulk_queue(
    tmp_path: Path, redis_url: str
) -> None:
    """Size-aware routing: a large document is one task on the bulk queue (parts and slices on
    a bulk worker), a container's parse goes there too, a small edit to the cpu queue; a pass
    with more than live_max_files documents (a copied folder) goes to the bulk queue whole."""
    ctx, catalog = context_for(tmp_path, redis_url, large_document_mb=0.01, live_max_files=3)
    broker = redis.Redis.from_url(redis_url)
    broker.delete("cpu", "gpu", "bulk")
    share = tmp_path / "share"
    (share / "big.txt").write_text("A long report paragraph.\n\n" * 1000)  # 26 KB
    with zipfile.ZipFile(share / "bundle.zip", "w") as zf:
        zf.writestr("inner.txt", "inside")
    (share / "note.txt").write_text("a small edit")
    ctx.runtime.indexer.sync_share("docs")
    ids = {r.path: r.id for r in catalog.documents("docs").values()}
    tokens: dict[str, str] = {}
    assert sorted(_queued(broker, "bulk", tokens)) == sorted(
        [(LARGE_TASK, ids["big.txt"]), (PARSE_TASK, ids["bundle.zip"])]
    )
    assert _queued(broker, "cpu") == [(PARSE_TASK, ids["note.txt"])]
    broker.delete("cpu", "bulk")

    for i in range(5):  # a copied folder: more than live_max_files at once
        (share / f"copy{i}.txt").write_text(f"copied {i}")
    ctx.runtime.indexer.sync_share("docs")  # (the three above, still pending, come again)
    copies = {r.id for r in catalog.documents("docs").values() if r.path.startswith("copy")}
    queued = _queued(broker, "bulk", tokens)
    assert copies <= {doc for task, doc in queued if task == PARSE_TASK}
    assert (LARGE_TASK, ids["big.txt"]) in queued and broker.llen("cpu") == 0

    # the bulk worker's task: the large document through the processor's large path
    broker.delete("bulk")
    seen: list[str] = []
    ctx.runtime.processor.process_large = lambda item, report: seen.append(item.entry.path)
    ref = {"doc_id": ids["big.txt"], "token": tokens[ids["big.txt"]], "changed_at": 0.0}
    assert large_document(ctx, ref) == "indexed" and seen == ["big.txt"]
