"""What the catalog says: documents by status, failures with reasons, what is pending."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from index.catalog import FAILED, PENDING, SKIPPED, Catalog, DocumentRecord
from ingest.paths import display

_LIST_LIMIT = 1000


def _item(rec: DocumentRecord) -> dict[str, Any]:
    return {
        "share": rec.share,
        "path": rec.path,
        "display_path": display(rec.path),
        "reason": rec.error,
        "attempts": rec.attempts,
        "version": rec.version,
        "updated_at": rec.updated_at.isoformat(timespec="seconds") if rec.updated_at else None,
    }


def status_report(
    catalog: Catalog,
    service: dict[str, Any] | None = None,
    in_flight: dict[str, Any] | None = None,
) -> dict[str, Any]:
    skipped = catalog.with_status(SKIPPED, _LIST_LIMIT)
    captions = catalog.caption_counts()
    now = datetime.now(UTC)
    return {
        "documents": catalog.counts(),
        "freshness": catalog.freshness(),
        # how far behind each share is: the age of its oldest pending document (0: caught up)
        "behind_s": {
            share: round((now - since).total_seconds(), 1)
            for share, since in catalog.pending_since().items()
        },
        "failed": [_item(r) for r in catalog.with_status(FAILED, _LIST_LIMIT)],
        "pending": [_item(r) for r in catalog.with_status(PENDING, _LIST_LIMIT)],
        "skipped": [_item(r) for r in skipped],
        # every skipped document counted by its reason (an unsupported type names itself)
        "skipped_by_reason": catalog.reason_counts(SKIPPED),
        # documents (not deleted) by format and status; a type that is not read as ".ext"
        "formats": catalog.format_counts(),
        # indexed, but readable by nobody: their permissions could not be read
        "acl_unreadable": [
            {**_item(r), "reason": r.acl_note} for r in catalog.with_acl_note(_LIST_LIMIT)
        ],
        # documents with figures by caption status; "pending": indexed with their text, the
        # figures wait for the VLM (added at a later reconcile); "off": no VLM configured
        "captions": captions,
        "captions_pending": captions.get("pending", 0),
        # deletions a reconcile held back: the share looked emptied (root gone or changed, or
        # more than max_delete_fraction at once); 'shareindex deletes --confirm SHARE' to go on
        "held_deletions": catalog.held_deletions(),
        # SMB shares whose own permissions are unknown (what is done, and what to grant)
        "share_warnings": catalog.share_warnings(),
        "service": service,
        # the running service's work now: large documents (chunks done/total, rate) and the
        # bulk backlog by size with the age of its oldest document; None: no service
        "in_flight": in_flight,
    }


def format_status(report: dict[str, Any]) -> str:
    docs = report["documents"]
    lines = ["documents: " + ", ".join(f"{n} {status}" for status, n in docs.items())]
    service = report.get("service")
    lines.append(
        f"service: running (pid {service['pid']}, {service['url']})"
        if service
        else "service: not running"
    )
    for share, held in (report.get("held_deletions") or {}).items():
        lines.append(
            f"deletions held: {share}: {held['documents']} document(s) since {held['since']}: "
            f"{held['reason']}; they stay searchable until the files return, or confirm with "
            f"'shareindex deletes --confirm {share}'"
        )
    for share, warning in (report.get("share_warnings") or {}).items():
        lines.append(f"warning: share {share}: {warning}")
    lines += _in_flight_lines(report.get("in_flight"))
    if report["pending"]:
        lines.append(f"pending ({docs['pending']}):")
        lines += [
            f"  {d['share']}:{d['display_path']}" + (f"  ({d['reason']})" if d["reason"] else "")
            for d in report["pending"]
        ]
    if report["failed"]:
        lines.append(f"failed ({docs['failed']}):")
        lines += [f"  {d['share']}:{d['display_path']}: {d['reason']}" for d in report["failed"]]
    if report["acl_unreadable"]:
        lines.append(
            f"readable by nobody, permissions unreadable ({len(report['acl_unreadable'])}):"
        )
        lines += [
            f"  {d['share']}:{d['display_path']}: {d['reason']}" for d in report["acl_unreadable"]
        ]
    captions = report.get("captions") or {}
    if captions:
        lines.append("figure captions: " + ", ".join(f"{n} {s}" for s, n in captions.items()))
    if captions.get("pending"):
        lines.append(
            f"  {captions['pending']} document(s) indexed with their text, figures waiting for "
            "the VLM"
        )
    if captions.get("off"):
        lines.append(
            f"  {captions['off']} document(s) not captioned: no VLM configured (SHAREINDEX_VLM_URL)"
        )
    if report.get("formats"):
        lines.append("by format:")
        lines += [
            f"  {fmt}: " + ", ".join(f"{n} {status}" for status, n in counts.items())
            for fmt, counts in report["formats"].items()
        ]
    if report["skipped_by_reason"]:
        lines.append(f"skipped ({docs['skipped']}):")
        lines += [f"  {n} x {reason}" for reason, n in report["skipped_by_reason"].items()]
    return "\n".join(lines)


def _in_flight_lines(in_flight: dict[str, Any] | None) -> list[str]:
    if not in_flight:
        return []
    lines = []
    for d in in_flight.get("large_documents") or []:
        approx = "~" if d["chunks_total_estimated"] else ""
        eta = f", about {d['eta_s']:g} s left" if d.get("eta_s") is not None else ""
        lines.append(
            f"in flight: {d['share']}:{d['display_path']} ({d['bytes'] / 1e6:.1f} MB): "
            f"{d['chunks_done']}/{approx}{d['chunks_total']} chunks, {d['chunks_per_s']:g} chunks/s{eta}"
        )
    backlog = in_flight.get("bulk_backlog")
    if backlog and (backlog["documents"] or backlog["in_progress"]):
        sizes = ", ".join(f"{v['documents']} {k}" for k, v in backlog["by_size"].items())
        lines.append(
            f"bulk backlog: {backlog['documents']} document(s) waiting"
            + (f" ({sizes})" if sizes else "")
            + f", {backlog['in_progress']} in progress, oldest waiting {backlog['oldest_waiting_s']:g} s"
        )
    return lines
