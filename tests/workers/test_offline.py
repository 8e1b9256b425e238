"""No network at run time, ever: a whole sync with every non-loopback connection refused (and
recorded) must complete with the same results as an unguarded one, and must not even try."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import CORPUS_ENV, run_cli
from tests.corpus import write_bad_corpus, write_good_corpus

pytestmark = pytest.mark.integration
NETGUARD = Path(__file__).resolve().parent.parent / "netguard"


def _sync(root: Path, data: Path, extra_env: dict[str, str]) -> dict:
    proc = run_cli("sync", "--share", f"corpus={root}", "--data-dir", str(data), "--json",
                   env={**CORPUS_ENV, **extra_env})  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # the bad corpus fails as it should, nothing else
    return json.loads(proc.stdout)


def _search(data: Path, query: str, extra_env: dict[str, str]) -> list[tuple[str, str]]:
    proc = run_cli("search", query, "--data-dir", str(data), "--k", "5", "--json", env=extra_env)
    assert proc.returncode == 0, proc.stderr
    return [(h["metadata"]["path"], h["page_content"]) for h in json.loads(proc.stdout)]


def test_sync_with_the_network_refused_gives_the_same_results(tmp_path: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    write_good_corpus(root)
    write_bad_corpus(root)
    log = tmp_path / "netguard.log"
    guarded = {"PYTHONPATH": str(NETGUARD), "NETGUARD_LOG": str(log)}

    offline = _sync(root, tmp_path / "offline", guarded)
    online = _sync(root, tmp_path / "online", {})

    for summary in (offline, online):
        summary.pop("seconds")
    assert offline == online
    assert offline["documents"]["new"] > 10
    query = "The zebra valve calibration uses cobalt shims."
    assert _search(tmp_path / "offline", query, guarded) == _search(tmp_path / "online", query, {})
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", f"connections were attempted:\n{attempts}"


def test_the_guard_really_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above means something only if the guard blocks what it claims to. The real
    connect and lookup are replaced by recorders, so nothing leaves the machine even if it did not."""
    import importlib.util
    import socket

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, getattr(socket.socket, name))
    monkeypatch.setattr(socket, "getaddrinfo", socket.getaddrinfo)
    log = tmp_path / "netguard.log"
    monkeypatch.setenv("NETGUARD_LOG", str(log))
    spec = importlib.util.spec_from_file_location(
        "netguard_under_test", NETGUARD / "sitecustomize.py"
    )
    assert spec and spec.loader
    guard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(guard)
    passed: list[object] = []
    monkeypatch.setattr(guard, "_connect", lambda sock, addr: passed.append(addr))
    monkeypatch.setattr(guard, "_getaddrinfo", lambda host, *a, **k: passed.append(host) or [])

    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("10.1.2.3", 80))
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("github.com", 443)
    with socket.socket() as sock:
        sock.connect(("127.0.0.1", 9))  # loopback goes through
    socket.getaddrinfo("localhost", 80)
    assert passed == [("127.0.0.1", 9), "localhost"]
    assert log.read_text().splitlines() == [
        f"{os.getpid()} connect ('10.1.2.3', 80)",
        f"{os.getpid()} getaddrinfo 'github.com'",
    ]
