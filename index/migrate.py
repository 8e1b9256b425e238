"""Moving an embedded index made with qdrant-client's local mode (ShareIndex 0.1) into Qdrant Edge.

Every point is copied with its vectors and payload as they are: nothing is parsed or embedded
again, point ids stay, so the catalog still describes the index exactly. The copy goes into an
empty Edge index under a marker file; a copy cut short (killed, disk full) is started again from
scratch at the next start. When it is complete the old folder is renamed ``qdrant.migrated`` (a
backup the operator may delete).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from index.edge import EdgeIndex
from index.vectors import IndexPoint, StoreError

MARKER = "migrating-from-local-mode"
_PAGE = 1000


def needs_migration(local_path: Path, collection: str, edge_path: Path) -> bool:
    """A local-mode collection, and no complete Edge index yet."""
    has_local = (local_path / "collection" / collection).is_dir()
    return has_local and (not edge_path.exists() or (edge_path / MARKER).exists())


def migrate_local_mode(
    local_path: Path, collection: str, edge_path: Path, say: Callable[[str], object]
) -> int:
    """Copy the collection into a new Edge index at ``edge_path``; returns the points copied."""
    from index.qdrant import QdrantIndex, open_client

    if edge_path.exists():  # a copy cut short: start again
        shutil.rmtree(edge_path)
    edge_path.mkdir(parents=True)
    (edge_path / MARKER).write_text(str(local_path))
    source = QdrantIndex(open_client(path=str(local_path)), collection)
    target = EdgeIndex(edge_path, optimize_after=0)
    started, copied = time.monotonic(), 0
    try:
        meta = source.client.get_collection(collection).config.metadata or {}
        if "embedding_model" not in meta or "dimension" not in meta:
            raise StoreError(
                f"the index in {local_path} has no model metadata and cannot be migrated: "
                f"move it away and run 'shareindex sync' to index the shares again"
            )
        target.ensure_collection(
            meta["embedding_model"], int(meta["dimension"]), meta.get("sparse_tokenizer", "bigram")
        )
        total = source.count()
        say(f"migrating the embedded index to Qdrant Edge: {total:,} points from {local_path} "
            f"(vectors copied, nothing re-embedded)")  # fmt: skip
        batch: list[IndexPoint] = []
        for point in source.points(with_vectors=True):
            if point.dense is None or point.sparse is None:
                raise StoreError(f"point {point.id} has no vectors; the index cannot be migrated")
            batch.append(IndexPoint(point.id, point.payload.get("page_content", ""),
                                    point.dense, point.sparse, point.metadata))  # fmt: skip
            if len(batch) >= _PAGE:
                copied += _write(target, batch)
                say(f"  {copied:,} of {total:,} points")
        copied += _write(target, batch)
        target.optimize()
        target.flush()
    finally:
        target.close()
        source.close()
    (edge_path / MARKER).unlink()
    backup = local_path.with_name(local_path.name + ".migrated")
    local_path.rename(backup)
    say(f"migrated {copied:,} points in {time.monotonic() - started:.1f} s; the old index is kept "
        f"in {backup} (delete it when you no longer need it)")  # fmt: skip
    return copied


def _write(target: EdgeIndex, batch: list[IndexPoint]) -> int:
    target.upsert(batch)
    n = len(batch)
    batch.clear()
    return n
