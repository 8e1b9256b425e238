"""The whole pipeline, for real: the ``shareindex`` command, unstructured, the embedding model and
Qdrant local mode, over a generated corpus of every supported format plus hostile files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from index.catalog import SqlCatalog
from index.permissions.readers import Principal
from index.search import Searcher
from index.vectors import VectorIndex
from tests.conftest import CORPUS_ENV, run_cli
from tests.corpus import BAD_EXPECTED, NEEDLES, OUTSIDE_SECRET, write_bad_corpus, write_good_corpus
from tests.helpers import all_points, open_index, readable

pytestmark = pytest.mark.integration

PRIVATE = "private/salaries.txt"
PRIVATE_NEEDLE = "The okapi payroll ledger lists the emerald bonus."

#: a specific reason per bad file: "failed" alone would not show the right check fired
REASONS = {
    "bad/empty.txt": "empty file",
    "bad/truncated.pdf": "not a valid PDF",
    "bad/encrypted.pdf": "password-protected PDF",
    "bad/malformed.docx": "DOCX parser failed",
    "bad/junk.pdf": "no %PDF header",
    "bad/junk.docx": "not a valid DOCX",
    "bad/junk.pptx": "not a valid PPTX",
    "bad/junk.xlsx": "not a valid XLSX",
    "bad/binary.txt": "binary content",
    "bad/bomb.docx": "decompression bomb",
    "bad/program.exe": "unsupported file type (.exe)",
    "bad/huge.txt": "over the limit of 1,048,576",
    "bad/fifo.txt": "a FIFO",
    "bad/socket.txt": "a socket",
    "bad/outside.txt": "symbolic link to outside the share",
    "bad/inside_link.txt": "symbolic link to inside the share",
}


@dataclass
class Synced:
    root: Path
    data: Path
    first: dict[str, Any]
    first_rc: int

    def sync(self) -> tuple[int, dict[str, Any]]:
        proc = run_cli(
            "sync",
            "--share",
            f"corpus={self.root}",
            "--data-dir",
            str(self.data),
            "--json",
            env=CORPUS_ENV,
        )
        assert proc.returncode in (0, 3), proc.stderr
        return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Synced:
    base = tmp_path_factory.mktemp("e2e")
    root = base / "share"
    root.mkdir()
    write_good_corpus(root)
    write_bad_corpus(root)
    (root / "private").mkdir()
    (root / PRIVATE).write_text(PRIVATE_NEEDLE + "\n")
    (root / PRIVATE).chmod(0o600)  # owner (root) only
    data = base / "data"
    proc = run_cli(
        "sync", "--share", f"corpus={root}", "--data-dir", str(data), "--json", env=CORPUS_ENV
    )
    assert proc.returncode == 3, proc.stderr  # bad files failed, the rest indexed
    return Synced(root, data, json.loads(proc.stdout), proc.returncode)


@pytest.fixture
def index(synced: Synced, embedder) -> Iterator[tuple[VectorIndex, Searcher]]:
    store = open_index(synced.data)
    yield store, Searcher(store, embedder)
    store.close()


def _status(synced: Synced) -> dict[str, Any]:
    proc = run_cli("status", "--data-dir", str(synced.data), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_first_sync_summary(synced: Synced) -> None:
    docs = synced.first["documents"]
    expected_failed = sorted(p for p, s in BAD_EXPECTED.items() if s == "failed")
    assert docs["new"] == len(NEEDLES) + 1
    assert docs["failed"] == len(expected_failed)
    assert docs["skipped"] == len(BAD_EXPECTED) - len(expected_failed)
    assert (docs["changed"], docs["unchanged"], docs["deleted"]) == (0, 0, 0)
    assert synced.first["chunks"]["embedded"] > len(NEEDLES)
    assert synced.first["chunks"]["reused"] == 0
    assert sorted(f["path"] for f in synced.first["failures"]) == expected_failed
    assert synced.first["seconds"] > 0


def test_every_bad_file_is_recorded_with_a_specific_reason(synced: Synced) -> None:
    status = _status(synced)
    recorded = {d["path"]: ("failed", d["reason"]) for d in status["failed"]}
    recorded |= {d["path"]: ("skipped", d["reason"]) for d in status["skipped"]}
    for path, expected in BAD_EXPECTED.items():
        assert path in recorded, f"{path} not recorded"
        assert recorded[path][0] == expected, (path, recorded[path])
        assert REASONS[path] in recorded[path][1], (path, recorded[path])
    assert status["documents"]["indexed"] == len(NEEDLES) + 1
    assert status["pending"] == []


@pytest.mark.parametrize("path", sorted(NEEDLES))
def test_every_document_is_searchable_by_its_needle(synced: Synced, index, path: str) -> None:
    _, searcher = index
    hits = searcher.search(NEEDLES[path], Principal("root", ("root",)), k=3)
    assert hits, path
    assert hits[0].metadata["path"] == path
    assert (
        NEEDLES[path] in hits[0].page_content.replace(" ", "")
        or NEEDLES[path] in hits[0].page_content
    )


def test_payload_contract(synced: Synced, index) -> None:
    store, searcher = index
    hit = searcher.search(NEEDLES["reports/quarterly.pdf"], Principal("root", ("root",)), k=1)[0]
    meta = hit.metadata
    for key in ("doc_id", "share", "path", "version", "chunk_index", "chunk_count", "page_number", "kind",
                "acl", "acl_deny", "content_hash", "mtime", "ingested_at", "embedding_model", "section"):  # fmt: skip
        assert key in meta, key
    assert (meta["share"], meta["path"], meta["version"], meta["page_number"]) == (
        "corpus",
        "reports/quarterly.pdf",
        1,
        2,
    )
    assert meta["acl"] == ["everyone", "group:root", "user:root"]  # mode 644, owner root
    assert meta["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_tables_are_split_by_rows_with_their_header(synced: Synced, index) -> None:
    _, searcher = index
    hit = searcher.search(NEEDLES["reports/big_table.xlsx"], Principal("root"), k=1)[0]
    assert hit.metadata["kind"] == "table"
    header = hit.page_content.splitlines()[0]
    table_points = [
        p for p in all_points(index[0]) if p.payload["metadata"]["path"] == "reports/big_table.xlsx"
    ]
    assert len(table_points) > 3
    assert all(p.payload["page_content"].splitlines()[0] == header for p in table_points)


def test_nothing_outside_the_share_is_ever_indexed(synced: Synced, index) -> None:
    for point in all_points(index[0]):
        assert OUTSIDE_SECRET not in point.payload["page_content"]
        assert not point.payload["metadata"]["path"].startswith("bad/")


def test_search_applies_the_acl_of_the_principal(synced: Synced, index) -> None:
    _, searcher = index
    as_owner = searcher.search(PRIVATE_NEEDLE, Principal("root"), k=1)
    assert as_owner[0].metadata["path"] == PRIVATE
    assert as_owner[0].metadata["acl"] == ["user:root"]
    for principal in (Principal(), Principal("alice", ("root",)), Principal("alice")):
        hits = searcher.search(PRIVATE_NEEDLE, principal, k=50)
        assert PRIVATE not in {h.metadata["path"] for h in hits}
        assert hits  # the public documents are still there
    anonymous = searcher.search(NEEDLES["notes.txt"], Principal(), k=50)
    assert all("everyone" in h.metadata["acl"] for h in anonymous)


def test_cli_search_without_a_principal_sees_only_public(synced: Synced) -> None:
    proc = run_cli("search", PRIVATE_NEEDLE, "--data-dir", str(synced.data), "--k", "50", "--json")
    assert proc.returncode == 0, proc.stderr
    assert PRIVATE not in {h["metadata"]["path"] for h in json.loads(proc.stdout)}
    proc = run_cli(
        "search",
        PRIVATE_NEEDLE,
        "--user",
        "root",
        "--data-dir",
        str(synced.data),
        "--k",
        "1",
        "--json",
    )
    assert json.loads(proc.stdout)[0]["metadata"]["path"] == PRIVATE


def test_cli_search_json_shape(synced: Synced) -> None:
    proc = run_cli(
        "search", NEEDLES["guide.md"], "--data-dir", str(synced.data), "--k", "2", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 2
    assert set(hits[0]) == {"page_content", "score", "metadata"}
    assert hits[0]["metadata"]["path"] == "guide.md"


def test_resync_is_incremental_and_idempotent(synced: Synced) -> None:
    store = open_index(synced.data)
    before = sorted(str(p.id) for p in all_points(store))
    store.close()

    rc, again = synced.sync()
    assert rc == 0  # the bad files are unchanged: nothing failed this time
    assert again["documents"]["unchanged"] == len(NEEDLES) + 1 + len(BAD_EXPECTED)
    assert again["chunks"] == {"embedded": 0, "reused": 0}

    # touch: mtime moves, content does not -> no parsing, no embedding
    (synced.root / "notes.txt").touch()
    # edit one section of the long report, delete a file
    long_md = synced.root / "reports/long.md"
    long_md.write_text(
        long_md.read_text() + "\n\n## Addendum\n\nThe heron inspector found a loose copper rivet.\n"
    )
    (synced.root / "guide.md").unlink()
    (synced.root / "notes.txt").rename(synced.root / "renamed-notes.txt")
    rc, edited = synced.sync()
    assert rc == 0
    docs = edited["documents"]
    assert (docs["changed"], docs["deleted"], docs["new"], docs["moved"]) == (1, 1, 0, 1)
    assert docs["unchanged"] == len(NEEDLES) + 1 + len(BAD_EXPECTED) - 3
    assert edited["chunks"]["embedded"] <= 2  # the new section only
    assert edited["chunks"]["reused"] >= 5  # the untouched sections kept their vectors

    store = open_index(synced.data)
    try:
        after = all_points(store)
        versions = {
            p.payload["metadata"]["version"]
            for p in after
            if p.payload["metadata"]["path"] == "reports/long.md"
        }
        assert versions == {2}  # the old version is gone, only the new one is readable
        assert not [p for p in readable(after) if p.payload["metadata"]["path"] == "guide.md"]
        unchanged_ids = {str(p.id) for p in after} & set(before)
        assert len(unchanged_ids) == len(after) - len(
            [p for p in after if p.payload["metadata"]["path"] == "reports/long.md"]
        )
        renamed = [
            p.payload["metadata"]
            for p in after
            if p.payload["metadata"]["path"] == "renamed-notes.txt"
        ]
        assert renamed and all(
            m["version"] == 1 and m["filename"] == "renamed-notes.txt" for m in renamed
        )
    finally:
        store.close()
    catalog = SqlCatalog(f"sqlite:///{synced.data / 'catalog.db'}")
    try:
        tomb = catalog.find("corpus", "guide.md")
        assert tomb is not None and tomb.status == "deleted"
        assert [
            v.version for v in catalog.versions(catalog.find("corpus", "reports/long.md").id)
        ] == [1, 2]  # type: ignore[union-attr]
    finally:
        catalog.close()


def test_exit_codes(synced: Synced, tmp_path: Path) -> None:
    proc = run_cli("sync", "--share", "bad name=/tmp", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 1
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("shareindex: error: invalid setting shares")
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    good = tmp_path / "good"
    good.mkdir()
    proc = run_cli("sync", "--share", f"g={good}", "--data-dir", str(blocker / "data"))
    assert proc.returncode == 1
    assert "data dir" in proc.stderr and "not usable" in proc.stderr
    proc = run_cli("sync", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 1 and "no share given" in proc.stderr
    (good / "notes.txt").write_text("A small note about the loading dock.\n")
    proc = run_cli("sync", "--share", f"g={good}", "--data-dir", str(tmp_path / "d2"))
    assert proc.returncode == 0, proc.stderr
    assert "1 new" in proc.stdout


def test_sync_with_a_postgresql_catalog(postgres_url: str, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.md").write_text("# Valves\n\nThe gate valve is exercised monthly.\n")
    (share / "b.txt").write_text("")
    env = {"SHAREINDEX_CATALOG_URL": postgres_url}
    proc = run_cli(
        "sync", "--share", f"pg={share}", "--data-dir", str(tmp_path / "d"), "--json", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["documents"]["new"] == 1
    assert not (tmp_path / "d" / "catalog.db").exists()  # the catalog went to PostgreSQL
    catalog = SqlCatalog(postgres_url)
    try:
        assert catalog.find("pg", "a.md").status == "indexed"  # type: ignore[union-attr]
        assert catalog.find("pg", "b.txt").error == "empty file (0 bytes)"  # type: ignore[union-attr]
    finally:
        catalog.close()


def test_embedding_model_by_path_and_refusal_to_mix_models(tmp_path: Path, model_path: str) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.txt").write_text("The compressor oil is changed every 500 hours.\n")
    copy = tmp_path / "models" / "my-minilm"
    shutil.copytree(model_path, copy)
    data = str(tmp_path / "d")
    proc = run_cli(
        "sync",
        "--share",
        f"s={share}",
        "--data-dir",
        data,
        env={"SHAREINDEX_EMBEDDING_MODEL": str(copy)},
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "search",
        "compressor oil",
        "--data-dir",
        data,
        "--json",
        env={"SHAREINDEX_EMBEDDING_MODEL": str(copy)},
    )
    assert json.loads(proc.stdout)[0]["metadata"]["embedding_model"] == str(copy)
    # the collection records its model: the default model is refused, not mixed in
    proc = run_cli("sync", "--share", f"s={share}", "--data-dir", data)
    assert proc.returncode == 1
    assert f"was built with embedding model '{copy}' (384 dims)" in proc.stderr
    # a hub id that is not cached: a clear error, no download attempt
    proc = run_cli("sync", "--share", f"s={share}", "--data-dir", str(tmp_path / "d2"),
                   env={"SHAREINDEX_EMBEDDING_MODEL": "intfloat/multilingual-e5-small"})  # fmt: skip
    assert proc.returncode == 1
    assert "neither a local folder nor in the local Hugging Face cache" in proc.stderr
    assert "Traceback" not in proc.stderr
