"""The command line's import budget: ``--help`` and a search through the running service load none
of the heavy libraries (how fast they start is bench_cli's to say, in make bench)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import free_port, running_service
from workers.settings import load_settings

#: libraries a command that does not index or open the index must not load
HEAVY = ("torch", "sentence_transformers", "transformers", "onnxruntime", "numpy", "qdrant_client",
         "qdrant_edge", "unstructured", "celery", "fastapi", "uvicorn", "sqlalchemy", "ldap3",
         "smbprotocol", "PIL", "watchdog")  # fmt: skip

RUN_AND_REPORT = """
import sys
from workers.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print("RC", rc, "LOADED", ",".join(sorted(m for m in {heavy} if m in sys.modules)) or "-")
""".replace("{heavy}", repr(HEAVY))


def _run(*args: str) -> tuple[str, str]:
    result = subprocess.run([sys.executable, "-c", RUN_AND_REPORT, *args], capture_output=True,
                            text=True, timeout=600, env=dict(os.environ))  # fmt: skip
    last = result.stdout.strip().splitlines()[-1]
    return last, result.stdout


def test_help_loads_nothing_heavy() -> None:
    last, out = _run("--help")
    assert last == "RC 0 LOADED -", out
    assert "sync" in out and "search" in out
    last, _ = _run("sync", "--no-such-flag")
    assert last == "RC 2 LOADED -"  # a mistyped argument answers before anything loads


def test_token_create_runs_and_loads_nothing_heavy() -> None:
    last, out = _run("token", "create", "frontend", "--on-behalf")
    assert last.startswith("RC 0"), out
    assert 'name = "frontend"' in out and "on_behalf = true" in out


def test_a_search_through_the_running_service_loads_nothing_heavy(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.txt").write_text("The cormorant inventory lists nine boats.\n")
    settings = load_settings(data_dir=tmp_path / "data", shares={"s": share}, api_port=free_port(),
                             reconcile_interval_s=3600)  # fmt: skip
    with running_service(settings):
        last, out = _run("search", "cormorant inventory", "--json", "--data-dir",
                         str(tmp_path / "data"))  # fmt: skip
    assert last == "RC 0 LOADED -", out
    hits = json.loads(out[: out.rindex("RC 0")])
    assert hits[0]["metadata"]["path"] == "a.txt"
