"""A sync with nothing to embed never imports torch or loads the model, and starts no parser; a
sync never imports the query API (FastAPI, uvicorn, the MCP SDK: 1.6 s it does not need)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SYNC_AND_REPORT = """
import sys
from workers.cli import main
rc = main(sys.argv[1:])
heavy = [m for m in ("torch", "sentence_transformers", "transformers", "fastapi", "uvicorn", "mcp")
         if m in sys.modules]
print("RC", rc, "HEAVY", ",".join(heavy) or "-")
"""


def _sync(share: Path, data: Path, backend: str = "torch") -> str:
    result = subprocess.run(
        [sys.executable, "-c", SYNC_AND_REPORT, "sync", "--share", f"docs={share}",
         "--data-dir", str(data)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "SHAREINDEX_EMBEDDING_BACKEND": backend},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_resync_of_unchanged_files_does_not_import_torch(tmp_path: Path, share: Path) -> None:
    for i in range(5):
        (share / f"n{i}.md").write_text(f"# Note {i}\n\nThe pump {i} was serviced.\n")
    data = tmp_path / "data"
    assert _sync(share, data) == "RC 0 HEAVY torch,sentence_transformers,transformers"
    assert _sync(share, data) == "RC 0 HEAVY -"  # nothing changed: no model, no torch
    (share / "n0.md").write_text("# Note 0\n\nThe pump 0 was replaced.\n")
    assert "torch" in _sync(share, data)  # something to embed: the model is loaded


def test_the_int8_backend_embeds_without_torch_once_exported(tmp_path: Path, share: Path) -> None:
    """The default backend on the CPU: torch is needed once, to export the model; after that a
    sync that embeds runs on ONNX Runtime alone."""
    (share / "a.md").write_text("# Valves\n\nThe relief valve opens at 7 bar.\n")
    data = tmp_path / "data"
    env_dir = os.environ.get("SHAREINDEX_MODEL_DIR")
    assert env_dir, "conftest shares one export between the tests"
    first = _sync(share, data, "onnx-int8")  # exports unless an earlier test did
    assert first.startswith("RC 0")
    (share / "a.md").write_text("# Valves\n\nThe relief valve opens at 8 bar.\n")
    assert _sync(share, data, "onnx-int8") == "RC 0 HEAVY -"
