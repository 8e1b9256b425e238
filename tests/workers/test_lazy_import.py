"""A sync with nothing to embed never imports torch or loads the model, and starts no parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SYNC_AND_REPORT = """
import sys
from workers.cli import main
rc = main(sys.argv[1:])
heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
print("RC", rc, "HEAVY", ",".join(heavy) or "-")
"""


def _sync(share: Path, data: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SYNC_AND_REPORT, "sync", "--share", f"docs={share}",
         "--data-dir", str(data)],
        capture_output=True, text=True, timeout=600,
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
