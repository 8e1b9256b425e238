"""``shareindex run`` end to end: start it, drop a file, find it, delete it, see it gone, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_cli
from tests.helpers import all_points, free_port, open_index, wait_until

pytestmark = pytest.mark.integration


class Service:
    def __init__(self, root: Path, data: Path) -> None:
        self.root, self.data, self.port = root, data, free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "run", "--share", f"docs={root}", "--data-dir", str(data),
             "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "SHAREINDEX_DEBOUNCE_S": "0.2"},
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for_line(self, text: str, timeout: float = 120) -> None:
        wait_until(
            lambda: any(text in line for line in self.lines),
            timeout,
            f"output {text!r}: {self.lines}",
        )

    def search(self, query: str, **params: Any) -> list[dict[str, Any]]:
        token = json.loads((self.data / "service.json").read_text())["token"]
        r = httpx.get(f"http://127.0.0.1:{self.port}/search", params={"q": query, **params},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    root = tmp_path / "share"
    root.mkdir()
    (root / "existing.md").write_text(
        "# Boiler\n\nThe boiler is inspected every spring by the safety officer.\n"
    )
    svc = Service(root, tmp_path / "data")
    try:
        svc.wait_for_line("reconciled")
        yield svc
    finally:
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait()


def test_run_indexes_changes_serves_queries_and_stops_cleanly(service: Service) -> None:
    assert service.search("boiler inspection")[0]["metadata"]["path"] == "existing.md"

    (service.root / "new.txt").write_text(
        "The forklift battery is charged in bay seven overnight.\n"
    )
    wait_until(lambda: any(h["metadata"]["path"] == "new.txt" for h in service.search("forklift battery")),
               30, "new.txt to become searchable")  # fmt: skip

    # the CLI goes through the running service (the index is locked to it)
    proc = run_cli(
        "search", "forklift battery", "--data-dir", str(service.data), "--k", "1", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["metadata"]["path"] == "new.txt"
    # status reads the catalog beside it
    status = json.loads(run_cli("status", "--data-dir", str(service.data), "--json").stdout)
    assert status["documents"]["indexed"] == 2
    assert status["service"]["pid"] == service.proc.pid
    assert status["freshness"]["samples"] >= 2 and status["freshness"]["p50_s"] > 0
    assert status["behind_s"] == {}  # nothing pending

    # the API refuses callers without the token
    r = httpx.get(f"http://127.0.0.1:{service.port}/search", params={"q": "x"}, timeout=10)
    assert r.status_code == 401

    (service.root / "new.txt").unlink()
    wait_until(lambda: all(h["metadata"]["path"] != "new.txt" for h in service.search("forklift battery", k=10)),
               30, "new.txt to disappear")  # fmt: skip

    service.proc.send_signal(signal.SIGINT)
    assert service.proc.wait(timeout=60) == 0
    service.wait_for_line("stopped cleanly", timeout=5)
    assert not (service.data / "service.json").exists()

    # the lock is released: the index opens directly, in the state the service left it
    proc = run_cli("search", "boiler", "--data-dir", str(service.data), "--k", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [h["metadata"]["path"] for h in json.loads(proc.stdout)] == ["existing.md"]
    status = json.loads(run_cli("status", "--data-dir", str(service.data), "--json").stdout)
    assert status["documents"]["deleted"] == 1 and status["service"] is None


def test_search_context_through_the_running_service(service: Service) -> None:
    """``search --context N`` gives each hit its neighbouring chunks, whether the CLI opens the
    index itself or (as here) goes through the service that holds it."""
    words = ["anvil", "bolster", "crown", "die"]
    paragraphs = [f"Section {i} of the press manual: " + f"the {w} of the ram is checked. " * 50
                  for i, w in enumerate(words)]  # fmt: skip
    (service.root / "press.md").write_text("\n\n".join(paragraphs) + "\n")
    wait_until(lambda: any(h["metadata"]["path"] == "press.md" for h in service.search("press manual ram", k=10)),
               60, "press.md searchable")  # fmt: skip
    assert (service.data / "service.json").exists()  # the CLI will go through the service
    proc = run_cli("search", "the bolster of the ram", "--data-dir", str(service.data),
                   "--k", "1", "--context", "1", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [hit] = json.loads(proc.stdout)
    index = hit["metadata"]["chunk_index"]
    assert "bolster" in hit["page_content"]  # a chunk of section 1: one before it, some after
    assert 0 < index < hit["metadata"]["chunk_count"] - 1
    context = hit["context"]
    assert [c["chunk_index"] for c in context["before"]] == [index - 1]
    assert [c["chunk_index"] for c in context["after"]] == [index + 1]
    assert all(c["page_content"] for c in context["before"] + context["after"])


def test_second_service_on_the_same_data_dir_gets_a_clear_error(service: Service) -> None:
    proc = run_cli(
        "run",
        "--share",
        f"docs={service.root}",
        "--data-dir",
        str(service.data),
        "--port",
        str(free_port()),
    )
    assert proc.returncode == 1
    assert "held by another ShareIndex process" in proc.stderr
    assert "Traceback" not in proc.stderr


def _all_points(data: Path) -> list[Any]:
    store = open_index(data)
    try:
        return all_points(store)
    finally:
        store.close()


def _indexed(data: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{data / 'catalog.db'}?mode=ro", uri=True, timeout=5) as db:
            return int(
                db.execute("SELECT count(*) FROM documents WHERE status = 'indexed'").fetchone()[0]
            )
    except sqlite3.Error:
        return 0


def _committed(data: Path) -> dict[str, tuple[int, int]]:
    """path -> (version, chunk count) of every document the catalog says is indexed."""
    import sqlite3

    with sqlite3.connect(f"file:{data / 'catalog.db'}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute(
            "SELECT path, version, chunk_count FROM documents WHERE status = 'indexed'"
        ).fetchall()
    return {path: (version, count) for path, version, count in rows}


def test_killed_mid_indexing_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    total = 120
    for i in range(total):
        (root / f"doc{i:03d}.md").write_text(
            f"# Note {i}\n\n" + f"Inspection note {i} about conveyor {i}. " * 40
        )
    svc = Service(root, tmp_path / "data")
    try:
        wait_until(lambda: _indexed(svc.data) >= 1, 120, "the first document indexed")
        svc.proc.kill()  # kill -9 in the middle of the first reconcile: no clean-up at all
        svc.proc.wait()
    finally:
        if svc.proc.poll() is None:
            svc.proc.kill()
    assert 0 < _indexed(svc.data) < total, "not killed in the middle"
    # what the catalog had committed as indexed is in the index, complete (the index's
    # write-ahead log kept it through the kill)
    committed = _committed(svc.data)
    points = _all_points(svc.data)
    for path, (version, count) in committed.items():
        mine = sorted(p.payload["metadata"]["chunk_index"] for p in points
                      if p.payload["metadata"]["path"] == path
                      and p.payload["metadata"]["version"] == version)  # fmt: skip
        assert mine == list(range(count)), path
    proc = run_cli("sync", "--share", f"docs={root}", "--data-dir", str(svc.data), "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(run_cli("status", "--data-dir", str(svc.data), "--json").stdout)
    assert status["documents"]["indexed"] == total and status["pending"] == []
    chunks: dict[str, list[int]] = {}
    for p in _all_points(svc.data):
        meta = p.payload["metadata"]
        chunks.setdefault(meta["path"], []).append(meta["chunk_index"])
        assert meta["version"] == 1
    assert sorted(chunks) == [f"doc{i:03d}.md" for i in range(total)]
    for indexes in chunks.values():
        assert sorted(indexes) == list(range(len(indexes)))  # every chunk exactly once
