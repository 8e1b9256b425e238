"""``shareindex retry --failed`` in the embedded mode: failed documents are processed again."""

from __future__ import annotations

import json
from pathlib import Path

from index.catalog import SqlCatalog
from tests.conftest import run_cli


def test_retry_failed_processes_failed_documents_after_a_fix(tmp_path: Path, share: Path) -> None:
    (share / "report.txt").write_text("A report that is too large for a 10 byte limit.\n")
    (share / "ok.txt").write_text("ok\n")
    data = ["--share", f"docs={share}", "--data-dir", str(tmp_path / "data")]
    first = run_cli("sync", *data, env={"SHAREINDEX_MAX_FILE_MB": "0.00001"})
    assert first.returncode == 3, first.stderr
    again = run_cli("sync", *data)  # an unchanged failed file is not retried by a sync
    assert again.returncode == 0 and "0 new" in again.stdout

    retried = run_cli("retry", "--failed", "--json", *data)
    assert retried.returncode == 0, retried.stderr
    result = json.loads(retried.stdout)
    assert result["retried"] == 1 and result["paths"] == ["docs:report.txt"]
    assert result["report"]["documents"]["new"] == 1
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'data' / 'catalog.db'}")
    assert catalog.find("docs", "report.txt").status == "indexed"  # type: ignore[union-attr]
    catalog.close()
    nothing = run_cli("retry", "--failed", *data)
    assert nothing.returncode == 0 and "0 failed document(s) retried" in nothing.stdout
