"""A damaged store is an error with a remedy, not a traceback (issue 20, part 6): a truncated
catalog, an emptied catalog beside a full index, an index whose files cannot be read; each is
named in one line, and ``shareindex rebuild`` recovers (the catalog from the index without
embedding anything again; the index from the points that can still be read from the damaged
one, and the shares for the rest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration
WORDS = ["walrus", "quokka", "lemur"]


@pytest.fixture
def synced(tmp_path: Path) -> tuple[Path, Path]:
    share, data = tmp_path / "share", tmp_path / "data"
    share.mkdir()
    for word in WORDS:
        (share / f"{word}.txt").write_text(f"The {word} pump in hall three was rebuilt in May.")
    proc = run_cli("sync", "--share", f"s={share}", "--data-dir", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    return share, data


def _cli(share: Path, data: Path, *args: str) -> tuple[int, str, str]:
    proc = run_cli(*args, "--share", f"s={share}", "--data-dir", str(data))
    return proc.returncode, proc.stdout, proc.stderr


def _fatal_line(rc: int, stderr: str, *needles: str) -> None:
    assert rc == 1 and "Traceback" not in stderr, stderr
    assert all(n in stderr for n in needles), stderr


def test_a_truncated_catalog_is_named_and_rebuilt_from_the_index(synced: tuple[Path, Path]) -> None:
    share, data = synced
    with (data / "catalog.db").open("r+b") as fh:
        fh.truncate(5000)
    for command in (("sync",), ("verify",)):
        rc, _, err = _cli(share, data, *command)
        _fatal_line(rc, err, "catalog.db is damaged", "shareindex rebuild")
    rc, out, err = _cli(share, data, "rebuild", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["catalog"].startswith("damaged, moved aside")
    assert result["restored_documents"] == len(WORDS)
    assert result["sync"]["documents"]["unchanged"] == len(WORDS)
    assert result["sync"]["chunks"]["embedded"] == 0  # nothing embedded again
    assert result["verify"]["clean"]
    assert any(p.name.startswith("catalog.db.damaged-") for p in data.iterdir())
    found = run_cli("search", "quokka pump", "--json", "--data-dir", str(data))
    assert found.returncode == 0 and '"quokka.txt"' in found.stdout, found.stderr


def test_an_emptied_catalog_beside_a_full_index_is_not_indexed_over(
    synced: tuple[Path, Path],
) -> None:
    share, data = synced
    (data / "catalog.db").unlink()  # lost, replaced by a new empty one at the next start
    rc, _, err = _cli(share, data, "sync")
    _fatal_line(rc, err, "is empty but the index holds", "shareindex rebuild")
    rc, out, err = _cli(share, data, "rebuild", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["catalog"] == "empty, rebuilt from the index"
    assert result["sync"]["chunks"]["embedded"] == 0 and result["verify"]["clean"]


def _segment(data: Path) -> Path:
    return next((data / "index" / "shard" / "segments").iterdir())


DAMAGE = {
    "its configuration": lambda data: (data / "index" / "shard" / "edge_config.json").write_text("{"),
    "a segment's description": lambda data: (_segment(data) / "segment.json").write_text("{"),
    "a segment's payload index": lambda data: (
        _segment(data) / "payload_index" / "config.json").write_bytes(b"\x00" * 64),
    "its write-ahead log": lambda data: next((data / "index" / "shard" / "wal").glob("open-*")
                                             ).write_bytes(b"\xff" * 4096),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE)
def test_an_index_that_cannot_be_opened_is_rebuilt_reusing_every_vector_that_survives(
    synced: tuple[Path, Path], damage: str
) -> None:
    share, data = synced
    DAMAGE[damage](data)
    rc, _, err = _cli(share, data, "sync")
    _fatal_line(rc, err, "cannot open the index", "shareindex rebuild")
    rc, out, err = _cli(share, data, "rebuild", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["index"].startswith("damaged, moved aside")
    assert result["requeued_documents"] == len(WORDS)
    # the points were salvaged from the damaged copy: nothing is embedded again
    assert result["salvaged_points"] == len(WORDS)
    assert result["sync"]["chunks"]["embedded"] == 0, result["sync"]
    assert result["verify"]["clean"]
    found = run_cli("search", "lemur pump", "--json", "--data-dir", str(data))
    assert found.returncode == 0 and '"lemur.txt"' in found.stdout, found.stderr


def test_a_truncated_vector_file_is_named_and_only_the_lost_points_are_embedded_again(
    synced: tuple[Path, Path],
) -> None:
    """The shard opens, but its vector file holds one vector of three: a read says so in one
    line (not a traceback), and rebuild salvages the one point that can still be read."""
    share, data = synced
    vectors = _segment(data) / "vector_storage-dense" / "vectors" / "chunk_0.mmap"
    with vectors.open("r+b") as fh:
        fh.truncate(384 * 4)  # one vector of 384 float32s
    found = run_cli("search", "lemur pump", "--data-dir", str(data))
    _fatal_line(found.returncode, found.stderr, "is damaged", "shareindex rebuild")
    rc, out, err = _cli(share, data, "rebuild", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["index"].startswith("damaged, moved aside")
    assert result["salvaged_points"] == 1
    assert result["sync"]["chunks"]["embedded"] == len(WORDS) - 1, result["sync"]
    assert result["verify"]["clean"]
    found = run_cli("search", "lemur pump", "--json", "--data-dir", str(data))
    assert found.returncode == 0 and '"lemur.txt"' in found.stdout, found.stderr


def test_the_query_api_answers_a_damaged_index_with_503_and_the_remedy(
    synced: tuple[Path, Path],
) -> None:
    from fastapi.testclient import TestClient

    from index.permissions.callers import Authenticator, Caller, TokenEntry, hash_token
    from workers.query.app import create_app
    from workers.runtime import open_runtime
    from workers.settings import load_settings

    share, data = synced
    with (_segment(data) / "vector_storage-dense" / "vectors" / "chunk_0.mmap").open("r+b") as fh:
        fh.truncate(384 * 4)
    runtime = open_runtime(load_settings(data_dir=data, shares={"s": share}), warm=False)
    try:
        auth = Authenticator([TokenEntry(hash_token("si_t"), Caller("svc", on_behalf=True))])
        http = TestClient(create_app(runtime.searcher, dict, auth), raise_server_exceptions=False)
        reply = http.get("/search", params={"q": "lemur pump", "user": "root"},
                         headers={"Authorization": "Bearer si_t"})  # fmt: skip
        assert reply.status_code == 503, reply.text
        assert (
            "is damaged" in reply.json()["detail"]
            and "shareindex rebuild" in reply.json()["detail"]
        )
    finally:
        runtime.close()
