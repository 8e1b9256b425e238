"""A data dir indexed by an earlier release (qdrant-client's local mode) moves to Qdrant Edge at
the first start: every point copied with its vectors, nothing parsed or embedded again, the same
search results; a copy cut short starts again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from index.migrate import MARKER
from tests.conftest import run_cli
from tests.helpers import all_points, open_index

pytestmark = pytest.mark.integration

DOCS = {
    "pump.md": "# Pump\n\nThe impeller of the feed pump is bronze; the seal is replaced yearly.\n",
    "valve.txt": "The butterfly valve on line four leaks at the flange gasket.\n",
    "notes/boiler.txt": "The boiler is inspected every spring by the safety officer.\n",
}


def _cli(data: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    proc = run_cli(*args, "--data-dir", str(data), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def _points(data: Path, **settings: Any) -> dict[str, tuple[str, tuple[float, ...] | None]]:
    store = open_index(data, **settings)
    try:
        return {p.id: (p.payload["page_content"], p.dense) for p in store.points(with_vectors=True)}
    finally:
        store.close()


def test_a_local_mode_index_is_migrated_without_re_embedding(tmp_path: Path) -> None:
    share, data = tmp_path / "share", tmp_path / "data"
    for rel, text in DOCS.items():
        (share / rel).parent.mkdir(parents=True, exist_ok=True)
        (share / rel).write_text(text)
    old = {"SHAREINDEX_EMBEDDED_INDEX": "qdrant-local"}
    first, _ = _cli(data, "sync", "--share", f"docs={share}", env=old)
    assert first["documents"]["new"] == len(DOCS)
    before = _points(data, embedded_index="qdrant-local")
    hits_before, _ = _cli(data, "search", "flange gasket leak", env=old)

    # a copy cut short: the marker is left, the next start copies again from scratch
    (data / "index").mkdir()
    (data / "index" / MARKER).write_text("killed")

    again, stderr = _cli(data, "sync", "--share", f"docs={share}")
    assert (
        "migrating the embedded index to Qdrant Edge" in stderr and "nothing re-embedded" in stderr
    )
    assert again["documents"]["unchanged"] == len(DOCS)
    assert again["chunks"]["embedded"] == 0
    assert not (data / "qdrant").exists() and (data / "qdrant.migrated").is_dir()
    assert not (data / "index" / MARKER).exists()
    after = _points(data)
    assert after.keys() == before.keys()  # the same point ids
    for pid, (text, dense) in before.items():
        assert after[pid][0] == text
        assert after[pid][1] == pytest.approx(dense)
    hits_after, _ = _cli(data, "search", "flange gasket leak")
    assert [h["metadata"]["doc_id"] for h in hits_after] == [
        h["metadata"]["doc_id"] for h in hits_before
    ]

    (share / "valve.txt").write_text("The butterfly valve on line four was replaced in May.\n")
    edited, _ = _cli(data, "sync", "--share", f"docs={share}")
    assert (edited["documents"]["changed"], edited["chunks"]["embedded"]) == (1, 1)
    store = open_index(data)
    try:
        texts = [p.payload["page_content"] for p in all_points(store)]
    finally:
        store.close()
    assert any("replaced in May" in t for t in texts) and not any("leaks" in t for t in texts)
