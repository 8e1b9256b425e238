"""Helpers shared by the integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.vectors import StoredPoint, VectorIndex

if TYPE_CHECKING:
    from workers.runtime import Runtime
    from workers.settings import Settings
    from workers.watch.embedded import EmbeddedService


#: the distributed mode's timings, shortened for tests: leases, requeue checks, retry backoff
QUICK_TIMINGS = {
    "SHAREINDEX_DEBOUNCE_S": "0.2",
    "SHAREINDEX_LEASE_S": "3",
    "SHAREINDEX_REQUEUE_AFTER_S": "3",
    "SHAREINDEX_REQUEUE_INTERVAL_S": "1",
    "SHAREINDEX_RETRY_BACKOFF_S": "1",
    "SHAREINDEX_RETRY_BACKOFF_MAX_S": "2",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: no wait gives up before this many seconds: a condition that comes fails nothing on a slow day
#: (a loaded 2-core machine runs the same test several times slower); speed is make bench's
MIN_WAIT_S = 120.0


def wait_until(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true; fail with ``what`` after ``timeout`` s
    (at least ``MIN_WAIT_S``: the limit says when to give up, never how fast it must be)."""
    timeout = max(timeout, MIN_WAIT_S)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_together(task: Callable[[], Any], threads: int) -> list[BaseException]:
    """Run ``task`` on several threads at once; what they raised (empty: none failed)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            task()
        except BaseException as exc:
            errors.append(exc)

    started = [threading.Thread(target=run) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return errors


def all_points(store: VectorIndex) -> list[StoredPoint]:
    """Every point of the store, with payloads."""
    return list(store.points())


def readable(points: list[Any]) -> list[Any]:
    """The points some principal may read: a deleted document's points are kept for a while,
    readable by nobody (their ACL emptied), for the reuse of their vectors."""
    return [p for p in points if p.payload["metadata"].get("acl")]


def open_index(data_dir: Path, **settings: Any) -> VectorIndex:
    """The index of a data dir, as the commands open it (the embedded index by default); the
    process that held it must have stopped."""
    from workers.components import open_store
    from workers.settings import load_settings

    return open_store(load_settings(data_dir=data_dir, **settings))


@dataclass
class Running:
    """The embedded service of ``running_service``: its runtime, itself, what it said."""

    runtime: Runtime
    service: EmbeddedService
    said: list[str]


@contextlib.contextmanager
def running_service(settings: Settings, timeout: float = 60) -> Iterator[Running]:
    """``shareindex run`` in this process: the embedded service on a thread of its own, yielded
    after its first reconcile (``timeout`` s at most); stopped, its runtime closed, on the way
    out."""
    from workers.runtime import open_runtime
    from workers.watch.embedded import EmbeddedService

    said: list[str] = []
    runtime = open_runtime(settings, lanes=said.append)
    service = EmbeddedService(settings, runtime, say=said.append)
    thread = threading.Thread(target=service.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: any("reconciled" in line for line in said)
            and service.bulk is not None and service.bulk.idle(),
            timeout, "the first reconcile (and its bulk work)",
        )  # fmt: skip
        yield Running(runtime, service, said)
    finally:
        service.request_stop()
        thread.join(timeout=60)
        runtime.close()


class Proc:
    """A ``shareindex`` command running in its own process, its output collected."""

    def __init__(self, *args: str, env: dict[str, str], command: list[str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "workers.cli"]), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **env}, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for_line(self, text: str, timeout: float = 120) -> None:
        wait_until(lambda: any(text in line for line in self.lines) or self.proc.poll() is not None,
                   timeout, f"output {text!r}")  # fmt: skip
        assert self.proc.poll() is None, "\n".join(self.lines[-40:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """kill -9 of the process and everything it started (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@contextlib.contextmanager
def system_accounts(users: dict[str, list[str]], why: str) -> Iterator[None]:
    """Groups and users (user -> its groups) in the system databases for some tests, removed
    afterwards, users first (a group with a member may not go). Needs root: outside CI the
    tests skip, in CI they fail (``why`` says what needs root)."""
    import pytest

    from index.permissions.names import clear_name_caches

    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{why} need root in CI")
        pytest.skip(f"{why} need root")
    created: list[tuple[str, str]] = []
    try:
        for group in sorted({g for groups in users.values() for g in groups}):
            subprocess.run(["groupadd", group], check=True)
            created.insert(0, ("groupdel", group))
        for user, groups in users.items():
            subprocess.run(["useradd", "--no-create-home", "-G", ",".join(groups), user],
                           check=True)  # fmt: skip
            created.insert(0, ("userdel", user))
        clear_name_caches()
        yield
    finally:
        for command, name in created:
            subprocess.run([command, name], capture_output=True)
        clear_name_caches()

