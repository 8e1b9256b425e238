"""``shareindex verify``: compare share, catalog and index, and name every drift.

Three reads, none of them all at once:

1. the index, page by page (payloads, no vectors), summed up per document and version: how many
   points, the sum and the largest of their chunk numbers (a complete version of n chunks has
   n points numbered 0..n-1, each once), the ACLs they carry;
2. the catalog, share by share;
3. the share, scanned as a reconcile scans it (stat; a file whose mtime moved is hashed).

Kinds of drift (``KINDS``): a file not indexed at all (``not_indexed``) or not at its current
content (``stale_content``); an indexed document whose points are incomplete
(``incomplete``), duplicated (``duplicate``), of an older version only (``old_version``) or of
several versions (``mixed_versions``); points of no live catalog document (``orphan_points``; a deleted document's points kept,
readable by nobody, for ``keep_deleted_days`` are not);
a payload ACL that differs from what the share says now (``acl_mismatch``); a catalog row of a
file that is gone (``gone``). Documents in flight (pending) are counted, not judged.

``repair`` goes through the normal pipeline: orphan points are removed, and so are the points
of an indexed document that the catalog does not account for (other versions, chunks past its
last: what a writer that died before its clean-up left); every drifted document is marked
pending (its file, for a member) and the affected shares are reconciled (re-planned,
re-processed with vector reuse).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from index.catalog import DELETED, INDEXED, PENDING, Catalog, DocumentRecord
from index.vectors import VectorIndex
from ingest.errors import IngestError
from ingest.paths import display
from workers.sources.base import Source

log = logging.getLogger(__name__)

KINDS = (
    "not_indexed", "stale_content", "incomplete", "duplicate", "old_version", "mixed_versions",
    "orphan_points", "acl_mismatch", "share_acl_mismatch", "gone",
)  # fmt: skip
#: drift entries listed in full (the counts are always complete)
LIST_LIMIT = 1000


@dataclass
class _Version:
    points: int = 0
    index_sum: int = 0
    index_max: int = -1
    partial: bool = False


@dataclass
class _Points:
    """What the index holds of one document."""

    share: str = ""
    path: str = ""
    versions: dict[int, _Version] = field(default_factory=dict)
    acls: set[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=set)
    #: the share layers its points carry (one, the share's own, when nothing drifted)
    share_acls: set[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=set)


@dataclass
class Drift:
    kind: str
    share: str
    path: str
    doc_id: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "share": self.share, "path": self.path,
            "display_path": display(self.path), "doc_id": self.doc_id, "detail": self.detail,
        }  # fmt: skip


@dataclass
class VerifyReport:
    drift: list[Drift] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    checked_files: int = 0
    checked_documents: int = 0
    points: int = 0
    pending: int = 0
    repaired: dict[str, int] = field(default_factory=dict)

    def add(self, drift: Drift) -> None:
        self.counts[drift.kind] += 1
        if len(self.drift) < LIST_LIMIT:
            self.drift.append(drift)

    @property
    def clean(self) -> bool:
        return not self.counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "drift": {kind: self.counts.get(kind, 0) for kind in KINDS},
            "items": [d.to_dict() for d in self.drift],
            "checked": {
                "files": self.checked_files,
                "documents": self.checked_documents,
                "points": self.points,
            },  # fmt: skip
            "pending": self.pending,
            "repaired": self.repaired,
        }


def _summarise(store: VectorIndex, shares: set[str]) -> tuple[dict[str, _Points], int]:
    by_doc: dict[str, _Points] = {}
    total = 0
    for point in store.points(with_vectors=False):
        meta = point.metadata
        total += 1
        if meta.get("share") not in shares:
            continue
        doc = by_doc.setdefault(meta["doc_id"], _Points(meta["share"], meta.get("path", "")))
        v = doc.versions.setdefault(int(meta["version"]), _Version())
        index = int(meta["chunk_index"])
        v.points += 1
        v.index_sum += index
        v.index_max = max(v.index_max, index)
        v.partial = v.partial or bool(meta.get("partial"))
        doc.acls.add(_layer(meta, "acl"))
        doc.share_acls.add(_layer(meta, "share_acl"))
    return by_doc, total


def _layer(meta: dict[str, Any], name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(sorted(meta.get(name) or ())), tuple(sorted(meta.get(f"{name}_deny") or ()))


def verify(
    catalog: Catalog,
    store: VectorIndex,
    sources: Mapping[str, Source],
    ignore: list[str],
    file_hash: Callable[[Source, Any], str | None],
    shares: Iterable[str] | None = None,
) -> VerifyReport:
    """Every drift between the shares, the catalog and the index (``KINDS``)."""
    names = sorted(shares) if shares else sorted(sources)
    report = VerifyReport()
    points, report.points = _summarise(store, set(names))
    for name in names:
        source = sources[name]
        source.new_pass()
        known = catalog.documents(name)
        _check_share(source, points, report)
        _check_files(source, known, ignore, file_hash, points, report)
        for record in known.values():
            if record.status == PENDING:
                report.pending += 1
            elif record.status == INDEXED:
                report.checked_documents += 1
                _check_points(record, points.get(record.id), report)
        live = {r.id for r in known.values() if r.status != DELETED}
        kept = {r.id for r in known.values() if r.kept}  # deleted, kept hidden for reuse
        for doc_id, held in points.items():
            if doc_id in kept and held.acls <= {((), ())}:
                continue
            if held.share == name and doc_id not in live:
                report.add(Drift("orphan_points", name, held.path, doc_id,
                                 f"{sum(v.points for v in held.versions.values())} point(s) of a "
                                 "document the catalog does not hold as live"))  # fmt: skip
    return report


def _check_share(source: Source, points: Mapping[str, _Points], report: VerifyReport) -> None:
    """Every point of the share carries the share's own readers, as the share says now."""
    allow, deny = source.share_access().access.as_lists()
    wanted = (tuple(allow), tuple(deny))
    held: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for p in points.values():
        if p.share == source.name:
            held |= p.share_acls
    if held - {wanted}:
        report.add(Drift("share_acl_mismatch", source.name, "", None,
                         f"points carry the share readers {sorted(held - {wanted})[0][0]}, the "
                         f"share says {list(allow)}"))  # fmt: skip


def _check_files(
    source: Source, known: Mapping[str, DocumentRecord], ignore: list[str],
    file_hash: Callable[[Source, Any], str | None], points: Mapping[str, _Points],
    report: VerifyReport,
) -> None:  # fmt: skip
    share = source.name
    seen: set[str] = set()
    for entry in source.scan(ignore):
        seen.add(entry.path)
        report.checked_files += 1
        record = known.get(entry.path)
        if record is None or record.status == DELETED:
            report.add(
                Drift("not_indexed", share, entry.path, None, "a file the catalog does not know")
            )
            continue
        if record.status != INDEXED:
            continue  # pending (in flight), failed or skipped: a recorded outcome
        moved = (record.size, record.mtime_ns) != (entry.size, entry.mtime_ns)
        if moved and file_hash(source, entry) != record.content_hash:
            report.add(Drift("stale_content", share, entry.path, record.id,
                             f"indexed at version {record.version}; the file changed since"))  # fmt: skip
            continue
        held = points.get(record.id)
        if held is None or not held.acls:
            continue
        try:
            access, _ = source.permissions(entry.path)
        except (IngestError, OSError) as exc:
            log.warning("verify: permissions of %s/%s not read: %s", share, entry.path, exc)
            continue
        allow, deny = access.as_lists()
        wanted = (tuple(sorted(allow)), tuple(sorted(deny)))
        if held.acls != {wanted}:
            report.add(Drift("acl_mismatch", share, entry.path, record.id,
                             f"index says {sorted(held.acls)[0][0]}, the share says {list(wanted[0])}"))  # fmt: skip
    for path, record in known.items():
        if path not in seen and record.parent_id is None and record.status != DELETED:
            report.add(
                Drift("gone", share, path, record.id, f"catalog says {record.status}; no such file")
            )


def _check_points(record: DocumentRecord, held: _Points | None, report: VerifyReport) -> None:
    share, path, n = record.share, record.path, record.chunk_count
    current = held.versions.get(record.version) if held else None
    others = sorted(v for v in held.versions if v != record.version) if held else []
    if current is None:
        if others:
            report.add(Drift("old_version", share, path, record.id,
                             f"catalog says version {record.version}, the index holds {others}"))  # fmt: skip
        elif n:
            report.add(Drift("incomplete", share, path, record.id, f"0 of {n} chunks in the index"))
        return
    if others:
        report.add(Drift("mixed_versions", share, path, record.id,
                         f"versions {sorted([record.version, *others])} side by side"))  # fmt: skip
    if current.points > n:
        report.add(
            Drift("duplicate", share, path, record.id, f"{current.points} points for {n} chunks")
        )
    elif current.points < n or current.index_max != n - 1 or current.index_sum != n * (n - 1) // 2:
        report.add(Drift("incomplete", share, path, record.id,
                         f"{current.points} of {n} chunks in the index"))  # fmt: skip


def repair(
    report: VerifyReport,
    catalog: Catalog,
    store: VectorIndex,
    reconcile: Callable[[str], object],
) -> dict[str, int]:
    """Fix through the normal pipeline: orphan points removed, drifted documents marked pending
    (a member's file, for a member), then each affected share reconciled (``reconcile``)."""
    done: Counter[str] = Counter()
    shares: set[str] = set()
    for drift in _all(report):
        shares.add(drift.share)
        if drift.kind == "orphan_points" and drift.doc_id:
            store.delete_document(drift.doc_id)
        elif drift.kind == "share_acl_mismatch":  # the catalog's record; the reconcile reads anew
            recorded = catalog.share_readers(drift.share)
            store.set_share_readers(drift.share, *((recorded.allow, recorded.deny)
                                                   if recorded else ([], [])))  # fmt: skip
        elif drift.doc_id and drift.kind not in ("not_indexed", "gone"):
            record = catalog.get(drift.doc_id)
            if drift.kind in _STRAY and record is not None and record.status == INDEXED:
                _remove_stray(store, record)
            target = catalog.get(record.parent_id) if record and record.parent_id else record
            if target is not None:
                catalog.mark_pending(target.id, f"verify found it {drift.kind.replace('_', ' ')}")
        done[drift.kind] += 1
    for share in sorted(shares):
        reconcile(share)
    return dict(done)


#: drift of points the catalog does not account for: removed as the writer's last step would
_STRAY = ("duplicate", "mixed_versions", "old_version")


def _remove_stray(store: VectorIndex, record: DocumentRecord) -> None:
    """Points of versions other than the catalog's, and past its last chunk: what a writer that
    died between its upsert and its clean-up left (the document is indexed, not in flight)."""
    stray_versions = set()
    past_end = []
    for point in store.document_points(record.id):
        version, index = int(point.metadata["version"]), int(point.metadata["chunk_index"])
        if version != record.version:
            stray_versions.add(version)
        elif index >= record.chunk_count:
            past_end.append(index)
    for version in sorted(stray_versions):
        store.delete_version(record.id, version)
    store.delete_chunks(record.id, record.version, past_end)


def _all(report: VerifyReport) -> list[Drift]:
    if sum(report.counts.values()) > len(report.drift):
        log.warning("verify: more drift than listed; repair fixes the listed %d, run it again",
                    len(report.drift))  # fmt: skip
    return list(report.drift)


def format_report(report: dict[str, Any]) -> str:
    lines = []
    drift = {k: n for k, n in report["drift"].items() if n}
    checked = report["checked"]
    lines.append(
        f"checked {checked['files']} file(s), {checked['documents']} indexed document(s), "
        f"{checked['points']} point(s); {report['pending']} pending (in flight, not judged)"
    )
    if not drift:
        lines.append("no drift: the index equals the share")
    else:
        lines.append("drift: " + ", ".join(f"{n} {k}" for k, n in drift.items()))
        lines += [
            f"  {d['kind']}: {d['share']}:{d['display_path']}: {d['detail']}"
            for d in report["items"]
        ]
    if report.get("repaired"):
        lines.append("repaired (through a reconcile): "
                     + ", ".join(f"{n} {k}" for k, n in report["repaired"].items()))  # fmt: skip
    return "\n".join(lines)


def verify_runtime(
    runtime: Any, shares: list[str], fix: bool, reconcile: Callable[[str], object]
) -> dict[str, Any]:
    """Verify (and with ``fix``, repair and verify again) the shares of a runtime; sets
    ``shareindex_verify_drift{kind}``. An unknown share is a KeyError."""
    from workers import metrics

    sources = runtime.indexer.sources
    for name in shares:
        if name not in sources:
            raise KeyError(f"share {name!r} is not configured")

    def run() -> VerifyReport:
        return verify(runtime.catalog, runtime.store, sources, runtime.settings.ignore_patterns,
                      runtime.indexer.planner.hash, shares or None)  # fmt: skip

    report = run()
    out = report.to_dict()
    if fix and not report.clean:
        out["repaired"] = repair(report, runtime.catalog, runtime.store, reconcile)
        report = run()
        out["after_repair"] = report.to_dict()
    for kind in KINDS:
        metrics.VERIFY_DRIFT.labels(kind).set(report.counts.get(kind, 0))
    return out
