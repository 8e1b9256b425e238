"""What can still be read from a damaged embedded index (``shareindex rebuild`` moves it aside,
then salvages its points, so that their vectors are reused instead of embedded again).

An Edge shard is a configuration file, a write-ahead log and segments; a segment holds its
vectors, payloads, a payload index and a format version. Damage to one of these need not lose
the rest, so the points are read from a copy of the shard, trying in this order until one
opens:

1. as it is, with a new configuration file;
2. without its write-ahead log (what was not yet flushed to a segment is lost), each segment
   repaired: its payload index reset (it is only an index: reading every point does not need
   it), an unreadable format version or segment description replaced by those of a new plain
   segment of the same configuration (an optimized segment so repaired may still not open);
3. each segment alone, repaired the same way (a segment that still does not open is lost).

A shard that opens may still fail to read (a truncated vector or payload file): the point ids
are listed, then the points are read in small batches, and one by one where a batch fails, so
that only the damaged points are lost. A point is kept only with its vectors and its payload.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from index.edge import SHARD, EdgeIndex, shard_config, stored_point
from index.schema import DENSE, SPARSE
from index.vectors import StoredPoint

log = logging.getLogger(__name__)

_CONFIG = "edge_config.json"
_VERSION = "version.info"
_SEGMENT = "segment.json"
_BATCH = 64
_EMPTY_PAYLOAD_INDEX: dict[str, dict[str, Any]] = {"indexed_fields": {}, "indexed_types": {}}


def salvage_points(damaged: Path, dimension: int) -> Iterator[StoredPoint]:
    """The points (with vectors) that can still be read from the damaged index folder
    ``damaged``, each once; none when nothing of it opens. ``damaged`` itself is only read."""
    work = damaged.with_name(damaged.name + ".salvage")
    shutil.rmtree(work, ignore_errors=True)
    try:
        blank = work / "blank"
        qe.EdgeShard.create(str(blank), shard_config(dimension)).close()
        model = _model_segment(work / "model", dimension)
        shard = damaged / SHARD
        folder = shard / "segments"
        segments = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        tries: list[tuple[str, bool, list[Path]]] = [
            ("as it is", True, segments),
            ("without its log, segments repaired", False, segments),
        ]
        if len(segments) > 1:
            tries += [(f"segment {s.name} alone", False, [s]) for s in segments]
        seen: set[str] = set()
        for n, (what, as_is, parts) in enumerate(tries):
            opened = _open(work / f"try-{n}", blank, shard, as_is, parts, model)
            if opened is None:
                log.info("salvage: the shard %s does not open", what)
                continue
            try:
                for point in _read(opened):
                    if point.id not in seen:
                        seen.add(point.id)
                        yield point
            finally:
                opened.close()
            if n < 2:
                return  # the whole shard opened: nothing more to find segment by segment
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _model_segment(folder: Path, dimension: int) -> Path:
    """A new plain segment of the shard's configuration (one point written and flushed)."""
    shard = qe.EdgeShard.create(str(folder), shard_config(dimension))
    vector: dict[str, Any] = {DENSE: [1.0] * dimension, SPARSE: qe.SparseVector([0], [1.0])}
    shard.update(qe.UpdateOperation.upsert_points([qe.Point(0, vector, {})]))
    shard.flush()
    shard.close()
    return next(p for p in (folder / "segments").iterdir() if p.is_dir())


def _readable(path: Path, check: Any) -> bool:
    try:
        return bool(check(path.read_text()))
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def _open(folder: Path, blank: Path, shard: Path, as_is: bool, segments: list[Path],
          model: Path) -> EdgeIndex | None:  # fmt: skip
    target = folder / SHARD
    target.mkdir(parents=True)
    shutil.copy(blank / _CONFIG, target / _CONFIG)
    wal = shard / "wal" if as_is and (shard / "wal").is_dir() else blank / "wal"
    shutil.copytree(wal, target / "wal")
    (target / "segments").mkdir()
    for segment in segments:
        copy = target / "segments" / segment.name
        shutil.copytree(segment, copy)
        if not as_is:
            _repair(copy, model)
    try:
        return EdgeIndex(folder)
    except BaseException as exc:  # a Rust panic is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return None


def _repair(segment: Path, model: Path) -> None:
    index = segment / "payload_index"
    if index.exists():
        shutil.rmtree(index)
        index.mkdir()
        (index / "config.json").write_text(json.dumps(_EMPTY_PAYLOAD_INDEX))
    if not _readable(segment / _VERSION, lambda t: re.fullmatch(r"\d+\.\d+\.\d+", t.strip())):
        shutil.copy(model / _VERSION, segment / _VERSION)
    if not _readable(segment / _SEGMENT, json.loads):
        shutil.copy(model / _SEGMENT, segment / _SEGMENT)


def _read(index: EdgeIndex) -> Iterator[StoredPoint]:
    """Every point that can be read whole (payload and vectors)."""
    shard = index.shard
    ids: list[Any] = []
    offset = None
    try:
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1000, with_payload=False, with_vector=False)
            )
            ids.extend(r.id for r in records)
            if offset is None:
                break
    except Exception as exc:  # noqa: BLE001 - the id tracker is damaged: keep what it listed
        log.warning("salvage: listing the points stopped after %d: %s", len(ids), exc)
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        try:
            records = shard.retrieve(batch, True, True)
        except Exception:  # noqa: BLE001 - a damaged point in the batch: one by one
            records = []
            for point_id in batch:
                try:
                    records.extend(shard.retrieve([point_id], True, True))
                except Exception:  # noqa: BLE001, S112 - this point is lost
                    continue
        for record in records:
            point = stored_point(record)
            if point.dense is not None and point.sparse is not None and point.payload:
                yield point
