"""What is particular to the embedded index on Qdrant Edge: the same answers as qdrant-client (a
server's API), real payload indexes, one process per shard, reopening, the background optimizer."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from index.edge import EdgeIndex
from index.permissions.readers import Principal
from index.qdrant import QdrantIndex, open_client
from index.schema import INDEXED_FIELDS, build_metadata
from index.vectors import Hit, IndexLocked, IndexPoint, make_point
from ingest.models import SparseVector
from ingest.stages.sparse import SparseEncoder
from tests.helpers import wait_until

DIM = 8
WORDS = (
    "pump valve seal gasket bearing impeller flange motor shaft coupling rotor stator "
    "housing casing nozzle filter strainer sensor relay switch"
).split()


def _sparse(rng: random.Random) -> SparseVector:
    """Random terms with random weights: no two points score the same (equal scores may come
    in either order, which would make the comparison below a coin toss)."""
    terms = sorted(rng.sample(range(300), rng.randint(3, 12)))
    return SparseVector(tuple(terms), tuple(rng.uniform(0.1, 2.0) for _ in terms))


def _corpus(n: int, seed: int = 7) -> list[IndexPoint]:
    rng = random.Random(seed)
    points = []
    for i in range(n):
        # varied words and lengths: few equal scores, whose order either engine may choose
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + f" item {i}"
        acl = rng.choice([["everyone"], ["group:eng"], ["user:alice"], ["group:hr", "user:bob"]])
        meta = build_metadata(
            doc_id=f"d{i % 40}", share="s", path=f"d{i % 40}.txt", version=1, content_hash="h",
            chunk_index=i // 40, chunk_count=n // 40 + 1, kind="text", kinds=["text"],
            page_numbers=[], section=None, mtime_ns=0, filetype="txt", embedding_model="m",
            text_hash=f"t{i}", acl=acl, acl_deny=["user:carol"] if i % 7 == 0 else [],
            share_acl=["everyone"], share_acl_deny=[],
        )  # fmt: skip
        dense = [rng.gauss(0, 1) for _ in range(DIM)]
        points.append(make_point(f"d{i % 40}", 1, i // 40, text, dense, _sparse(rng), meta))
    return points


def _same_hits_at_each_score(a: list[Hit], b: list[Hit]) -> None:
    """Reciprocal rank fusion gives equal scores by construction (first in one list and first in
    the other: 1/2 each); equal scores may come in either order, and at the cut-off either may be
    kept. Every other position holds the same hit."""
    levels: dict[float, tuple[set[str], set[str]]] = {}
    for x, y in zip(a, b, strict=True):
        level = levels.setdefault(round(x.score, 4), (set(), set()))
        level[0].add(x.metadata["text_hash"])
        level[1].add(y.metadata["text_hash"])
    cut = round(a[-1].score, 4) if a else None
    for score, (mine, theirs) in levels.items():
        assert mine == theirs or score == cut, score


def test_edge_answers_as_qdrant_client_does(tmp_path: Path) -> None:
    """Same points, same queries: the same hits with the same scores, in the same order, for
    every mode and principal (exact search below the HNSW threshold on both)."""
    edge = EdgeIndex(tmp_path / "edge")
    server_api = QdrantIndex(open_client(path=str(tmp_path / "local")), "c")
    points = _corpus(400)
    for store in (edge, server_api):
        store.ensure_collection("m", DIM)
        store.upsert(points)
    rng = random.Random(3)
    principals = [Principal(), Principal("alice", ("eng",)), Principal("carol", ("hr",))]
    for _ in range(15):
        sparse = _sparse(rng)
        dense = [rng.gauss(0, 1) for _ in range(DIM)]
        for principal in principals:
            for mode in ("dense", "sparse", "hybrid"):
                a = edge.search(principal, dense, sparse, k=10, mode=mode)  # type: ignore[arg-type]
                b = server_api.search(principal, dense, sparse, k=10, mode=mode)  # type: ignore[arg-type]
                assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-4)
                _same_hits_at_each_score(a, b)
    edge.close()
    server_api.close()


def test_the_filter_fields_have_payload_indexes(tmp_path: Path) -> None:
    edge = EdgeIndex(tmp_path / "edge")
    edge.ensure_collection("m", DIM)
    schema = edge.shard.info().payload_schema
    assert {
        field: str(info.data_type).rsplit(".", 1)[-1].lower() for field, info in schema.items()
    } == {field: kind for field, kind in INDEXED_FIELDS.items()}
    edge.close()


def test_reopened_with_its_points_and_held_by_one_process(tmp_path: Path) -> None:
    edge = EdgeIndex(tmp_path / "edge")
    edge.ensure_collection("m", DIM)
    edge.upsert(_corpus(100))
    code = (
        "import sys\nfrom index.edge import EdgeIndex\nfrom index.vectors import IndexLocked\n"
        f"try:\n    EdgeIndex({str(tmp_path / 'edge')!r})\nexcept IndexLocked as e:\n    print(e); sys.exit(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert "held by another ShareIndex process" in proc.stdout
    with pytest.raises(IndexLocked):  # same process, second opener: also refused
        EdgeIndex(tmp_path / "edge")
    edge.close()
    again = EdgeIndex(tmp_path / "edge")
    again.ensure_collection("m", DIM)
    assert again.count() == 100
    again.close()


def test_the_optimizer_builds_the_index_when_writes_pause(tmp_path: Path) -> None:
    """Points are searchable at once (brute force); once enough wait and writes pause, the HNSW
    index is built in the background, and queries go on meanwhile."""
    edge = EdgeIndex(tmp_path / "edge", optimize_after=3000, idle_s=0.5)
    edge.ensure_collection("m", DIM)
    points = _corpus(4000)
    edge.upsert(points[:2000])
    assert edge.optimizer.runs == 0 and edge.unindexed() == 2000
    edge.upsert(points[2000:])
    assert edge.unindexed() == 4000
    hits = edge.search(Principal(), [1.0] * DIM, SparseEncoder().encode_query("pump"), k=5)
    assert hits  # searchable before any index exists
    wait_until(lambda: edge.optimizer.runs >= 1, 120, "the background optimize")
    assert edge.unindexed() == 0
    assert edge.search(Principal(), [1.0] * DIM, SparseEncoder().encode_query("pump"), k=5)
    edge.close()
