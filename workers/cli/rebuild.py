"""``shareindex rebuild``: a damaged or lost catalog or embedded index replaced, through the
normal pipeline.

- A catalog file that is not a database (``CatalogDamaged``) is moved aside
  (``catalog.db.damaged-TIME``); a catalog that is empty while the index holds points (lost, or
  replaced by an empty one) is rebuilt too: one row per document the index holds, read from the
  points' payloads page by page (documents being written or deleted, readable by nobody, are
  left out). Nothing is embedded again: the next pass hashes each file and finds it unchanged.
- An embedded index that cannot be opened, or whose points cannot all be read (``IndexDamaged``:
  a truncated or overwritten file), is moved aside (``index.damaged-TIME``); the points that can
  still be read from it are salvaged into a new index (``index.salvage``: only those of
  documents the catalog knows, at a version it has written), and every indexed document is
  marked pending: the pass reuses the salvaged vectors (the text of each chunk decides, as for
  any edit) and embeds the rest.

Then every share is reconciled (progress bar) and verified.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from index.catalog import DELETED, Catalog, CatalogDamaged, SqlCatalog
from index.salvage import salvage_points
from index.schema import CONTENT_KEY, document_id
from index.vectors import IndexDamaged, IndexPoint, StoredPoint, VectorIndex
from workers.cli import EXIT_FAILED_DOCS, EXIT_FATAL, EXIT_OK
from workers.cli.common import need_shares, progress, settings_of
from workers.components import finish_writes, open_store
from workers.query.client import read_service_info
from workers.runtime import open_runtime
from workers.settings import Settings
from workers.sync.report import ProgressFactory, SyncReport
from workers.sync.verify import format_report, verify_runtime


def _aside(path: Path) -> Path:
    target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(target)
    for suffix in ("-wal", "-shm"):  # SQLite's companions go with it
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    return target


def restore_catalog(catalog: Catalog, store: VectorIndex) -> int:
    """One indexed row per document the index holds (its newest complete version)."""
    newest: dict[str, dict[str, Any]] = {}
    for point in store.points(with_vectors=False):
        meta = point.metadata
        if meta.get("partial") or (not meta.get("acl") and not meta.get("acl_deny")):
            continue  # a version being written, or a deleted document's kept points
        held = newest.get(meta["doc_id"])
        if held is None or int(meta["version"]) > int(held["version"]):
            newest[meta["doc_id"]] = meta
    at = {(m["share"], m["path"]): doc_id for doc_id, m in newest.items()}
    for doc_id, meta in newest.items():
        path = meta["path"]
        parent = path.rsplit("#", 1)[0] if "#" in path else None
        parent_id = at.get((meta["share"], parent)) if parent else None  # ids follow moves
        catalog.restore_indexed(
            doc_id, meta["share"], path, int(meta["version"]), meta["content_hash"],
            int(meta["chunk_count"]), list(meta.get("acl") or []),
            list(meta.get("acl_deny") or []), meta.get("filetype"),
            parent_id or (document_id(meta["share"], parent) if parent else None),
        )  # fmt: skip
    return len(newest)


def _read_whole(store: VectorIndex) -> None:
    """Every point read once (IndexDamaged if one cannot be), then the index closed."""
    try:
        for _ in store.points(with_vectors=True):
            pass
    finally:
        store.close()


def salvage(damaged: Path, catalog: Catalog, store: VectorIndex, dimension: int,
            say: Callable[[str], object]) -> int:  # fmt: skip
    """The readable points of the damaged index written into the new one: those of documents
    the catalog knows, at a version it has written (a deleted document's while they are kept);
    how many."""
    newest: dict[str, int] = {}  # doc id -> the newest version the catalog lets it keep; -1: none
    batch: list[IndexPoint] = []
    written = 0

    def keep(point: StoredPoint) -> bool:
        doc_id = str(point.metadata.get("doc_id") or "")
        if doc_id not in newest:
            record = catalog.get(doc_id) if doc_id else None
            wanted = record is not None and (record.status != DELETED or record.kept)
            newest[doc_id] = record.version if record is not None and wanted else -1
        return int(point.metadata.get("version", 0)) <= newest[doc_id]

    for point in salvage_points(damaged, dimension):
        if not keep(point):
            continue
        assert point.dense is not None and point.sparse is not None
        batch.append(IndexPoint(point.id, point.payload.get(CONTENT_KEY, ""), point.dense,
                                point.sparse, point.metadata))  # fmt: skip
        if len(batch) == 256:
            store.upsert(batch)
            written += len(batch)
            batch = []
            if written % 10_240 == 0:
                say(f"salvaged {written} point(s) so far")
    store.upsert(batch)
    written += len(batch)
    say(f"salvaged {written} point(s) from the damaged index (their vectors are reused)")
    return written


def rebuild(
    settings: Settings, say: Callable[[str], object], progress: ProgressFactory
) -> dict[str, Any]:
    out: dict[str, Any] = {"catalog": "ok", "index": "ok"}
    if settings.catalog.startswith("sqlite:///"):
        try:
            SqlCatalog(settings.catalog).close()
        except CatalogDamaged:
            moved = _aside(Path(settings.catalog[len("sqlite:///") :]))
            say(f"the catalog is damaged: moved aside to {moved}")
            out["catalog"] = f"damaged, moved aside to {moved}"
    damaged: Path | None = None
    if settings.embedded and settings.embedded_index == "edge":
        try:
            _read_whole(open_store(settings, background=False))
        except IndexDamaged as exc:
            damaged = _aside(settings.index_path)
            say(f"the index is damaged ({exc}): moved aside to {damaged}")
            out["index"] = f"damaged, moved aside to {damaged}"
    runtime = open_runtime(settings, progress, warm=False, background=False, check_catalog=False)
    try:
        catalog, store = runtime.catalog, runtime.store
        if damaged is not None:
            out["salvaged_points"] = salvage(
                damaged, catalog, store, runtime.embedder.dimension, say
            )
        if not any(catalog.counts().values()) and store.count():
            out["restored_documents"] = restore_catalog(catalog, store)
            say(f"catalog rebuilt from the index: {out['restored_documents']} document(s)")
            if out["catalog"] == "ok":
                out["catalog"] = "empty, rebuilt from the index"
        if damaged is not None:
            requeued = 0
            for share in runtime.indexer.sources:
                for record in catalog.documents(share).values():
                    if record.status == "indexed":
                        catalog.mark_pending(record.id, "the index was rebuilt")
                        requeued += 1
            out["requeued_documents"] = requeued
            say(f"{requeued} document(s) to index again into the new index")
        total = SyncReport()
        for share in runtime.indexer.sources:
            total.add(runtime.indexer.sync_share(share))
        out["sync"] = total.to_dict()
        finish_writes(settings, store, say)
        out["verify"] = verify_runtime(runtime, [], False, runtime.indexer.sync_share)
    finally:
        runtime.close()
    return out


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Exit 0: rebuilt (or nothing to rebuild) and verified clean; 3: drift left; 1: fatal."""
    settings = settings_of(args)
    need_shares(settings)
    info = read_service_info(settings.data_dir)
    if info is not None:
        print(f"error: a service (pid {info['pid']}) holds this data dir: stop it first",
              file=sys.stderr)  # fmt: skip
        return EXIT_FATAL
    result = rebuild(settings, lambda m: print(m, file=sys.stderr, flush=True), progress)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(f"catalog: {result['catalog']}; index: {result['index']}")
        docs = result["sync"]["documents"]
        print("reconciled: " + ", ".join(f"{n} {k}" for k, n in docs.items() if n))
        print(format_report(result["verify"]))
    return EXIT_OK if result["verify"]["clean"] else EXIT_FAILED_DOCS
