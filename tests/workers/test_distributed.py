"""The distributed mode end to end: real Redis, real ``shareindex watch`` and ``shareindex
worker`` processes, Qdrant in local mode (so one threads-pool worker holds the index), the
catalog in SQLite. Timings (leases, requeue checks, backoff) are shortened by settings."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from index.catalog import FAILED, INDEXED, Catalog, SqlCatalog
from tests.conftest import run_cli
from tests.helpers import (
    QUICK_TIMINGS,
    Proc,
    all_points,
    free_port,
    open_index,
    readable,
    wait_until,
)

pytestmark = pytest.mark.integration


class Cluster:
    """A share, a data dir and the environment every process of the test shares."""

    def __init__(self, tmp: Path, broker: str, **settings: str) -> None:
        self.share = tmp / "share"
        self.share.mkdir()
        self.data = tmp / "data"
        self.api_port = free_port()
        self.metrics_port = free_port()
        self.env = {
            "SHAREINDEX_BROKER_URL": broker,
            "SHAREINDEX_DATA_DIR": str(self.data),
            "SHAREINDEX_SHARES": json.dumps({"docs": str(self.share)}),
            "SHAREINDEX_API_PORT": str(self.api_port),
            "SHAREINDEX_WORKER_METRICS_PORT": str(self.metrics_port),
            **QUICK_TIMINGS,
            "SHAREINDEX_RECONCILE_INTERVAL_S": "3600",
            **{f"SHAREINDEX_{k.upper()}": v for k, v in settings.items()},
        }
        self.procs: list[Proc] = []
        self._catalog: Catalog | None = None

    def start(self, *args: str, ready: str) -> Proc:
        proc = Proc(*args, env=self.env)
        self.procs.append(proc)
        proc.wait_for_line(ready)
        return proc

    def worker(self, *extra: str) -> Proc:
        return self.start("worker", *extra, ready=" ready.")

    def watcher(self) -> Proc:
        return self.start("watch", ready="watching")

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            wait_until(lambda: (self.data / "catalog.db").exists(), 60, "the catalog")
            self._catalog = SqlCatalog(f"sqlite:///{self.data / 'catalog.db'}")
        return self._catalog

    def doc(self, path: str) -> Any:
        return self.catalog.find("docs", path)

    def indexed(self, *paths: str) -> bool:
        docs = [self.doc(p) for p in paths]
        return all(d is not None and d.status == INDEXED for d in docs)

    def points(self) -> list[Any]:
        """Every point of the index; the worker holding it must be stopped."""
        engine = self.env.get("SHAREINDEX_EMBEDDED_INDEX", "edge")
        store = open_index(self.data, embedded_index=engine)
        try:
            return all_points(store)
        finally:
            store.close()

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            print(f"--- {' '.join(proc.args)}", *proc.lines[-60:], sep="\n")  # shown on failure
        if self._catalog:
            print("--- catalog")  # what the waits were waiting for
            for path, rec in sorted(self._catalog.documents("docs").items()):
                print(path, rec.status, f"v{rec.version}", rec.error, rec.lease_owner,
                      rec.dispatch_token, rec.unfinished)  # fmt: skip
            self._catalog.close()


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, redis_url)
    yield c
    c.close()


def _points_by_doc(points: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in points:
        out.setdefault(p.payload["metadata"]["path"], []).append(p)
    return out


def _assert_exactly_once(cluster: Cluster, points: list[Any], path: str, history: int = 1) -> None:
    """One version in the index, all its chunks, each once; ``history`` versions written."""
    doc = cluster.doc(path)
    mine = _points_by_doc(points)[path]
    assert {p.payload["metadata"]["version"] for p in mine} == {doc.version}
    assert sorted(p.payload["metadata"]["chunk_index"] for p in mine) == list(
        range(doc.chunk_count)
    )
    assert len(cluster.catalog.versions(doc.id)) == history


def _words(n: int, seed: str) -> str:
    paras = [f"{seed} paragraph {i}: the pump housing at station {i % 17} shows wear on bearing "
             f"{i % 11}; vibration was {i * 0.37:.2f} mm/s on inspection day {i % 28}." for i in range(n)]  # fmt: skip
    return "\n\n".join(paras)


def test_watcher_and_worker_index_a_share_through_redis(cluster: Cluster) -> None:
    (cluster.share / "pump.md").write_text("# Pump manual\n\nThe impeller is bronze.\n")
    (cluster.share / "old.txt").write_text("A note that will be deleted.\n")
    worker = cluster.worker()
    cluster.watcher()
    wait_until(lambda: cluster.indexed("pump.md", "old.txt"), 60, "the initial plan")

    (cluster.share / "valve.txt").write_text("The butterfly valve leaks at the flange gasket.\n")
    (cluster.share / "old.txt").unlink()
    (cluster.share / "pump.md").write_text("# Pump manual\n\nThe impeller is stainless steel.\n")
    wait_until(lambda: cluster.indexed("valve.txt") and cluster.doc("old.txt").status == "deleted"
               and cluster.doc("pump.md").version == 2, 60, "the changes")  # fmt: skip

    # the worker holds the index, so the CLI searches through the API it serves
    found = run_cli("search", "butterfly valve gasket", "--json", env=cluster.env)
    assert found.returncode == 0, found.stderr
    assert '"valve.txt"' in found.stdout
    metrics = _metrics(cluster)
    docs = {"new": 3.0, "changed": 1.0, "deleted": 1.0}  # pump, old, valve; pump; old
    for outcome, n in docs.items():
        assert metrics[("shareindex_documents_total", (outcome, "docs"))] == n, outcome
    # each embed message indexed its document, or found it indexed by another embed task that
    # took it along in its batch ("stale"): none was lost, none wrote twice
    embeds = {o: metrics.get(("shareindex_tasks_total", (o, "embed")), 0.0)
              for o in ("indexed", "stale")}  # fmt: skip
    assert embeds["indexed"] >= 2 and sum(embeds.values()) == 4, embeds
    assert metrics[("shareindex_freshness_seconds_count", ("new", "docs"))] == 3
    assert metrics[("shareindex_queue_wait_seconds_count", ("cpu",))] > 0

    worker.stop()
    points = cluster.points()
    assert set(_points_by_doc(readable(points))) == {"pump.md", "valve.txt"}
    _assert_exactly_once(cluster, points, "valve.txt")
    _assert_exactly_once(cluster, points, "pump.md", history=2)
    assert "stainless" in " ".join(p.payload["page_content"] for p in points)


def _metrics(cluster: Cluster) -> dict[tuple[str, tuple[str, ...]], float]:
    """The worker's /metrics: (sample name, label values sorted by label name) -> value."""
    text = httpx.get(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(v for _, v in sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _staged(cluster: Cluster, doc_id: str) -> bool:
    with sqlite3.connect(cluster.data / "catalog.db", timeout=10) as db:
        row = db.execute("SELECT 1 FROM staged_documents WHERE doc_id = ?", (doc_id,)).fetchone()
    return row is not None


@pytest.mark.parametrize("step", ["parse", "embed"])
def test_worker_killed_mid_document_is_indexed_exactly_once_by_another(
    cluster: Cluster, step: str
) -> None:
    """kill -9 of the whole worker (its process group) while it parses the document, or while
    it embeds it (parsed and staged, taken by the embed task): another worker indexes it once,
    well before Redis's visibility timeout would hand the message out again."""
    cluster.worker()
    cluster.watcher()
    (cluster.share / "big.txt").write_text(_words(700, "Long report"))

    def at_step() -> bool:
        doc = cluster.doc("big.txt")
        if doc is None or doc.lease_owner is None:
            return False
        return _staged(cluster, doc.id) == (step == "embed")

    wait_until(at_step, 60, f"the worker in the {step} step")
    first = cluster.procs[0]
    first.kill()
    assert cluster.doc("big.txt").status == "pending"

    cluster.worker()
    # the lease runs out after 3 s (QUICK_TIMINGS), not the broker's visibility timeout (1 h)
    wait_until(lambda: cluster.indexed("big.txt"), 600, "the document indexed by the second worker")
    assert cluster.doc("big.txt").lease_owner is None
    cluster.procs[2].stop()
    points = cluster.points()
    _assert_exactly_once(cluster, points, "big.txt")
    assert cluster.doc("big.txt").version == 1


def test_flushed_queue_the_reconciler_brings_every_pending_document(
    cluster: Cluster, redis_url: str
) -> None:
    from workers.distributed.app import make_celery
    from workers.settings import load_settings

    worker = cluster.worker()
    cluster.watcher()
    app = make_celery(load_settings(broker_url=redis_url, data_dir=str(cluster.data)))
    app.control.cancel_consumer("gpu", reply=True)  # parsed documents now wait in the gpu queue
    names = [f"note{i}.txt" for i in range(5)]
    for i, name in enumerate(names):
        (cluster.share / name).write_text(f"Maintenance note {i}: replace the filter cartridge.\n")
    broker = redis.Redis.from_url(redis_url)
    wait_until(lambda: broker.llen("gpu") == len(names), 60, "5 documents parsed, waiting to embed")
    assert all(cluster.doc(n).status == "pending" for n in names)
    worker.stop()

    broker.flushdb()  # Redis restarted without persistence: the messages are gone
    cluster.worker()
    wait_until(lambda: cluster.indexed(*names), 90, "the pending documents dispatched again")
    cluster.procs[-1].stop()
    points = cluster.points()
    for name in names:
        _assert_exactly_once(cluster, points, name)


def _behind_s(cluster: Cluster) -> float | None:
    metrics = httpx.get(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=10).text
    for line in metrics.splitlines():
        if line.startswith('shareindex_behind_seconds{share="docs"}'):
            return float(line.split()[-1])
    assert "# TYPE shareindex_behind_seconds gauge" in metrics
    return None


def test_index_store_unavailable_for_a_while_tasks_retry_and_nothing_is_lost(
    cluster: Cluster,
) -> None:
    """The index refuses every write for a while (its storage locked by another process): the
    tasks retry with backoff, and every document arrives once. The index here is qdrant-client's
    local mode, whose SQLite storage another process can lock; the retry path is the same for
    any index (a Qdrant server down, Edge out of disk)."""
    cluster.env["SHAREINDEX_EMBEDDED_INDEX"] = "qdrant-local"
    (cluster.share / "first.txt").write_text("The first document creates the collection.\n")
    worker = cluster.worker()
    cluster.watcher()
    wait_until(lambda: cluster.indexed("first.txt"), 60, "the first document")

    storage = cluster.data / "qdrant" / "collection" / "shareindex" / "storage.sqlite"
    blocker = sqlite3.connect(storage, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")  # the index's storage is locked: every write fails
    names = ["a.txt", "b.txt", "c.txt"]
    try:
        for name in names:
            (cluster.share / name).write_text(f"Document {name} about the compressor intake.\n")
        wait_until(lambda: any((d := cluster.doc(n)) and (d.error or "").startswith("retrying")
                               for n in names), 60, "a retry recorded")  # fmt: skip
        time.sleep(4)
        assert not any(cluster.indexed(n) for n in names)
        behind = _behind_s(cluster)  # the freshness lag is visible while it grows
        assert behind is not None and behind >= 4
    finally:
        blocker.rollback()
        blocker.close()
    wait_until(lambda: cluster.indexed(*names), 90, "the documents after the outage")
    metrics = httpx.get(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=10).text
    assert 'shareindex_tasks_total{outcome="retry",task="embed"}' in metrics
    assert _behind_s(cluster) is None  # caught up: no lag sample
    worker.stop()
    points = cluster.points()
    for name in names:
        _assert_exactly_once(cluster, points, name)
        assert cluster.doc(name).error is None


def test_poison_document_is_failed_once_and_the_worker_keeps_serving(cluster: Cluster) -> None:
    (cluster.share / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(4000))
    (cluster.share / "fake.docx").write_bytes(b"this is not a zip archive at all")
    (cluster.share / "good.txt").write_text("The good document is about conveyor belts.\n")
    cluster.worker()
    cluster.watcher()
    wait_until(lambda: cluster.indexed("good.txt") and all(
        cluster.doc(n) and cluster.doc(n).status == FAILED for n in ("broken.pdf", "fake.docx")),
        60, "the outcomes")  # fmt: skip
    for name in ("broken.pdf", "fake.docx"):
        assert cluster.doc(name).error
    time.sleep(5)  # several requeue checks later: not retried
    for name in ("broken.pdf", "fake.docx"):
        doc = cluster.doc(name)
        assert (doc.status, doc.attempts) == (FAILED, 1), doc
    (cluster.share / "after.txt").write_text("Still serving: the hydraulic press manual.\n")
    wait_until(lambda: cluster.indexed("after.txt"), 60, "a document after the poison")


def test_retry_failed_replays_through_the_queue(cluster: Cluster) -> None:
    (cluster.share / "slow.txt").write_text("Too large for a size limit of 10 bytes.\n")
    cluster.env["SHAREINDEX_MAX_FILE_MB"] = "0.00001"
    worker = cluster.worker()
    cluster.watcher()
    wait_until(lambda: (d := cluster.doc("slow.txt")) and d.status == FAILED, 60, "the failure")
    worker.stop()
    del cluster.env["SHAREINDEX_MAX_FILE_MB"]  # the fix
    cluster.worker()
    time.sleep(2)
    assert cluster.doc("slow.txt").status == FAILED  # failed documents are not retried alone
    result = run_cli("retry", "--failed", "--json", env=cluster.env)
    assert result.returncode == 0, result.stderr
    assert '"dispatched": 1' in result.stdout
    wait_until(lambda: cluster.indexed("slow.txt"), 60, "the retried document")


def test_flower_lists_the_worker_behind_authentication(cluster: Cluster) -> None:
    port = free_port()
    cluster.env.update({"SHAREINDEX_FLOWER_PORT": str(port),
                        "SHAREINDEX_FLOWER_BASIC_AUTH": "operator:s3cret"})  # fmt: skip
    cluster.worker()
    flower = Proc("flower", env=cluster.env)
    cluster.procs.append(flower)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/healthcheck"), 60, "Flower up")
    assert httpx.get(f"{base}/api/workers", timeout=10).status_code == 401

    def listed() -> bool:
        r = httpx.get(f"{base}/api/workers", params={"refresh": "true"},
                      auth=("operator", "s3cret"), timeout=30)  # fmt: skip
        return r.status_code == 200 and any(name.startswith("cpu-gpu-bulk.") for name in r.json())

    wait_until(listed, 60, "the worker in Flower")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_combinations_that_cannot_work_get_a_clear_error(cluster: Cluster, redis_url: str) -> None:
    env = cluster.env
    for args, needle, run_env in [
        (("worker", "--pool", "prefork"), "threads pool", env),
        (("worker", "--queues", "gpu"), "every queue", env),
        (("worker", "--queues", "cpu,tpu"), "unknown queue tpu", env),
        (("api",), "needs a Qdrant server", env),
        (("watch",), "SHAREINDEX_BROKER_URL", {k: v for k, v in env.items() if "BROKER" not in k}),
    ]:
        result = subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True,
                                text=True, timeout=120, env={k: v for k, v in os.environ.items()
                                if not k.startswith("SHAREINDEX_")} | run_env)  # fmt: skip
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert needle in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    cluster.worker()  # holds the index: a second one gets a clear error, not a stack trace
    second = run_cli("worker", env=env, timeout=120)
    assert second.returncode == 1 and "held by another ShareIndex process" in second.stderr


PREFORK_WORKER = """
import sys
from workers.distributed import worker
from workers.settings import load_settings

settings = load_settings()
worker.prepare_metrics(settings)
# local mode allows one process to hold the index: a prefork pool of exactly one child holds it
worker.choose_pool = lambda settings, queues, pool: ("prefork", 1)
sys.exit(worker.run_worker(settings, ["cpu", "gpu"], None))
"""


def test_prefork_child_loads_its_own_models_parses_inline_and_reports_metrics(
    cluster: Cluster,
) -> None:
    """The pool used with a Qdrant server: each child builds its context after the fork, parses
    in itself (a daemonic child may not start a parse pool), and its metrics reach the main
    process's /metrics (Prometheus multiprocess mode). With local mode, a pool of one child."""
    (cluster.share / "a.md").write_text("# Seals\n\nThe compressor seal kit is part 4471.\n")
    (cluster.share / "b.txt").write_text("The chiller needs a new expansion valve.\n")
    worker = Proc(env=cluster.env, command=[sys.executable, "-c", PREFORK_WORKER])
    cluster.procs.append(worker)
    worker.wait_for_line(" ready.")
    cluster.watcher()
    wait_until(lambda: cluster.indexed("a.md", "b.txt"), 120, "indexing by the prefork child")
    metrics = _metrics(cluster)  # summed over the pool's processes
    assert metrics[("shareindex_documents_total", ("new", "docs"))] == 2
    embeds = [
        metrics.get(("shareindex_tasks_total", (o, "embed")), 0.0) for o in ("indexed", "stale")
    ]
    assert embeds[0] >= 1 and sum(embeds) == 2, embeds  # "stale": taken along by the other
    assert any("ForkPoolWorker" in line and "'parsed'" in line for line in worker.lines)


def test_the_threads_pool_at_concurrency_4_on_a_mixed_corpus_crashes_nothing(
    cluster: Cluster,
) -> None:
    """Native code from worker threads (issue 20, part 3): pdfium, onnxruntime, tokenizers,
    PIL, SQLite and the embedded index, four tasks at a time, a few hundred tasks (plan, parse,
    embed: the first sync of a mixed corpus, then an edit of half of it): 0 crashes, 0 failed
    documents, 0 tasks ending in an error, and verify finds the index equal to the share."""
    from bench.corpus import write_mixed_corpus

    formats = write_mixed_corpus(cluster.share, 72, long_every=10, interleave=True)
    assert len(formats) >= 6  # md, txt, html, docx, pdf, pptx, xlsx, csv
    worker = cluster.worker("--pool", "threads", "--concurrency", "4")
    cluster.watcher()
    files = sorted(p for p in cluster.share.rglob("*") if p.is_file())

    def settled() -> bool:
        counts = cluster.catalog.counts()
        return counts.get("indexed", 0) + counts.get("failed", 0) == len(files)

    wait_until(settled, 600, "the first sync of the corpus")
    edited = files[::2]
    for path in edited:  # an edit of every other document: a second wave of tasks
        path.write_bytes(
            path.read_bytes() + (b"\n" if path.suffix in (".txt", ".md", ".csv") else b"")
        )
        os.utime(path)

    def caught_up() -> bool:  # every edit planned and done (the catalog has each file's mtime)
        for path in edited:
            record = cluster.doc(str(path.relative_to(cluster.share)))
            if record is None or record.status not in ("indexed", "failed"):
                return False
            if record.mtime_ns != path.stat().st_mtime_ns:
                return False
        return True

    wait_until(caught_up, 600, "the edits")
    assert worker.proc.poll() is None, "\n".join(worker.lines[-40:])
    assert cluster.catalog.counts().get("failed", 0) == 0, cluster.catalog.with_status(FAILED)
    metrics = _metrics(cluster)
    tasks = {key[1]: n for key, n in metrics.items() if key[0] == "shareindex_tasks_total"}
    assert sum(tasks.values()) >= 240, tasks
    assert not {k: n for k, n in tasks.items() if k[0] in ("error", "failed") and n}, tasks
    worker.stop()
    verified = run_cli("verify", "--json", env=cluster.env)
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]


def test_a_service_started_while_the_catalog_is_unreachable_waits_for_it(
    cluster: Cluster,
) -> None:
    """The catalog database restarting (here: cut off behind a proxy) while the watcher starts:
    it says so and retries until the database answers, then runs; it does not exit."""
    from sqlalchemy.engine import make_url

    from tests.chaos import TcpProxy
    from tests.conftest import fresh_database

    with contextlib.contextmanager(fresh_database)("wait") as url:
        real = make_url(url)
        proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
        try:
            proxy.cut()
            cluster.env["SHAREINDEX_CATALOG_URL"] = real.set(
                host="127.0.0.1", port=proxy.port
            ).render_as_string(hide_password=False)
            watcher = Proc("watch", env=cluster.env)
            cluster.procs.append(watcher)
            watcher.wait_for_line("retrying in", 60)
            proxy.restore()
            watcher.wait_for_line("watching", 120)
            assert any("cannot open the catalog" in line for line in watcher.lines)
        finally:
            cluster.close()  # before the database is dropped
            cluster.procs.clear()
            proxy.close()
