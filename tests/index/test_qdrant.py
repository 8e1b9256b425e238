"""What is particular to qdrant-client's implementation (local mode: one process per folder) and
the filter downstream apps copy; the behaviour every implementation shares is in test_vectors.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.permissions.filter import acl_filter
from index.permissions.readers import Principal
from index.qdrant import QdrantIndex, open_client
from index.schema import build_metadata
from index.vectors import IndexLocked, ModelMismatch, make_point
from ingest.stages.sparse import SparseEncoder

DIM = 4


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QdrantIndex]:
    idx = QdrantIndex(open_client(path=str(tmp_path / "q")), "test")
    idx.ensure_collection("test-model", DIM)
    yield idx
    idx.close()


def _point(doc: str, version: int, i: int, text: str, acl: list[str], deny: list[str] | None = None,
           dense: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)):  # fmt: skip
    meta = build_metadata(
        doc_id=doc, share="s", path=f"{doc}.txt", version=version, content_hash="h", chunk_index=i,
        chunk_count=1, kind="text", kinds=["text"], page_numbers=[], section=None, mtime_ns=0,
        filetype="txt", embedding_model="test-model", text_hash=f"{doc}{version}{i}", acl=acl, acl_deny=deny or [],
        share_acl=["everyone"], share_acl_deny=[],
    )  # fmt: skip
    return make_point(doc, version, i, text, dense, SparseEncoder().encode_document(text), meta)


def test_another_embedding_model_is_refused(store: QdrantIndex) -> None:
    with pytest.raises(ModelMismatch, match="test-model"):
        store.ensure_collection("other-model", DIM)
    with pytest.raises(ModelMismatch):
        store.ensure_collection("test-model", DIM + 1)
    store.ensure_collection("test-model", DIM)


def test_second_process_gets_a_clear_error(store: QdrantIndex, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom index.qdrant import open_client\nfrom index.vectors import IndexLocked\n"
        f"try:\n    open_client(path={str(tmp_path / 'q')!r})\nexcept IndexLocked as e:\n    print(e); sys.exit(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert "held by another ShareIndex process" in proc.stdout
    with pytest.raises(IndexLocked):  # same process, second client: also refused
        open_client(path=str(tmp_path / "q"))


def test_acl_filter_shape_is_what_downstream_apps_copy() -> None:
    flt = acl_filter(Principal("alice", ("eng",)))
    assert flt.must[0].key == "metadata.acl"  # type: ignore[index,union-attr]
    assert flt.must[0].match.any == ["everyone", "user:alice", "group:eng"]  # type: ignore[index,union-attr]
    assert flt.must_not[0].key == "metadata.acl_deny"  # type: ignore[index,union-attr]
