"""`sync` over a share of Office 97-2003, RTF and OpenDocument files: each converted by
LibreOffice in the parse process (its memory and time limits), found by a phrase only it holds,
versioned like any document; a damaged one fails alone, with its reason."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.office import SAMPLES, soffice, write_source

pytestmark = pytest.mark.integration


def _make(folder: Path, name: str, ext: str, phrase: str) -> None:
    kind = SAMPLES[ext][0]
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / f"{Path(name).stem}.{kind}"
        write_source(source, kind, phrase)
        soffice(Path(work) / "profile", ext, source, Path(work))
        shutil.copy(Path(work) / f"{Path(name).stem}.{ext}", folder / name)


def test_legacy_office_files_are_indexed_versioned_and_a_damaged_one_fails_alone(
    tmp_path: Path,
) -> None:
    if not shutil.which("soffice"):
        if os.environ.get("CI"):
            pytest.fail("LibreOffice is missing (make installs libreoffice-*-nogui)")
        pytest.skip("needs LibreOffice")
    share, data = tmp_path / "share", tmp_path / "data"
    (share / "legacy").mkdir(parents=True)
    phrases = {"legacy/report.doc": "検査記録はトキ倉庫の金庫に保管する。",
               "legacy/budget.xls": "Kingfisher budget line for pumps",
               "legacy/briefing.ppt": "Egret plant shutdown briefing",
               "legacy/memo.rtf": "The grebe memo approves the new valves.",
               "legacy/plan.odt": "The plover plan moves the lathe."}  # fmt: skip
    for rel, phrase in phrases.items():
        _make(share / "legacy", Path(rel).name, Path(rel).suffix[1:], phrase)
    (share / "legacy" / "broken.doc").write_bytes(bytes(range(256)) * 20)
    for path in share.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    args = ("--share", f"docs={share}", "--data-dir", str(data))

    def sync() -> dict:  # type: ignore[type-arg]
        proc = run_cli("sync", *args, "--json")
        assert proc.returncode in (0, 3), proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def found(query: str) -> list[str]:
        proc = run_cli("search", query, "--k", "3", "--json", "--data-dir", str(data))
        assert proc.returncode == 0, proc.stderr
        return [h["metadata"]["path"] for h in json.loads(proc.stdout)]

    report = sync()
    assert report["documents"]["new"] == 5, report
    [failure] = report["failures"]
    assert failure["path"] == "legacy/broken.doc"
    assert "not a valid .doc file" in failure["reason"]
    for rel, phrase in phrases.items():
        assert found(phrase)[0] == rel, (rel, found(phrase))
    # an edit of the .doc: a new version, the new text found
    _make(share / "legacy", "report.doc", "doc", "検査記録は本社の書庫に移した。")
    (share / "legacy" / "report.doc").chmod(0o644)
    report = sync()
    assert report["documents"]["changed"] == 1, report
    assert found("検査記録は本社の書庫に移した。")[0] == "legacy/report.doc"
