"""What changed on a share, compared with the catalog: the first half of every pass.

A file is new, changed (its bytes differ from what is indexed), unchanged (same size and mtime:
not even hashed; mtime moved but same bytes: hashed, not parsed), skipped (never opened: a link,
a FIFO, an unsupported type), or gone. Cheap changes are carried out here: a permission change
rewrites the payload (never re-embeds), a moved file (the exact bytes of a vanished document
under a new path) is re-pointed, a gone file's points are removed. New and changed documents are
recorded as pending (durable: a crash leaves them pending) and handed to the sink: the document
processor (embedded), or the queue (distributed).
"""

from __future__ import annotations

import hashlib
import logging
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from index.catalog import (
    DELETED,
    FAILED,
    INDEXED,
    PENDING,
    SKIPPED,
    Catalog,
    DocumentRecord,
    ShareReaders,
)
from index.permissions.readers import Access
from index.vectors import VectorIndex
from ingest.errors import IngestError, TransientError, UnsupportedType
from ingest.paths import display
from ingest.stages.parse import filetype_of, format_name
from workers import metrics
from workers.outages import is_transient
from workers.sources.base import FileEntry, Source, is_ignored
from workers.sync.guard import DeletionGuard
from workers.sync.members import MemberBook
from workers.sync.outcomes import Outcomes
from workers.sync.report import SyncReport
from workers.sync.work import Plan, WorkItem, WorkSink

log = logging.getLogger(__name__)


class Planner:
    def __init__(
        self,
        catalog: Catalog,
        store: VectorIndex,
        sink: WorkSink,
        *,
        ignore: list[str],
        max_file_bytes: int,
        recaption: bool = False,
        max_delete_fraction: float = 0.5,
        delete_guard_min: int = 3,
        keep_deleted_s: float = 0.0,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.sink = sink
        self.ignore = ignore
        self.max_file_bytes = max_file_bytes
        #: figures are captioned here: a document whose captions wait for the VLM is redone
        self.recaption = recaption
        self.outcomes = Outcomes(catalog)
        self.members = MemberBook(catalog, store)
        #: a reconcile that would delete more than this share of a share's documents (and at
        #: least delete_guard_min of them) holds its deletions
        self.guard = DeletionGuard(catalog, max_delete_fraction, delete_guard_min)
        #: a deleted document's points stay this long, readable by nobody (their vectors are
        #: reused by the same content coming back); 0: removed at once
        self.keep_deleted_s = keep_deleted_s

    # -- passes -------------------------------------------------------------------------------
    def sync_share(self, source: Source) -> SyncReport:
        """Reconcile a whole share with the catalog and the index."""
        started = time.monotonic()
        report = SyncReport()
        source.new_pass()
        self._share_layer(source, report)
        self._forget_expired()
        known = self.catalog.documents(source.name)
        plan = Plan(waiting=_waiting(known.values()))
        seen: set[str] = set()
        for entry in source.scan(self.ignore):
            seen.add(entry.path)
            self._plan_one(source, entry, known.get(entry.path), plan, report, entry.mtime_ns / 1e9)
        plan.gone = [  # members (attachments, archive members) go with their file
            rec
            for path, rec in known.items()
            if path not in seen and rec.status != DELETED and rec.parent_id is None
        ]
        self._carry_out(source, plan, report, {}, known)
        report.seconds = time.monotonic() - started
        return report

    def sync_paths(self, source: Source, changes: Mapping[str, float]) -> SyncReport:
        """Bring the paths of watcher events up to date; ``changes`` maps path -> event time."""
        started = time.monotonic()
        report = SyncReport()
        source.new_pass()
        if self.catalog.share_readers(source.name) is None:  # before its first reconcile
            self._share_layer(source, report)
        plan = Plan()
        wanted = {
            path: at
            for path, at in changes.items()
            if not any(is_ignored(part, self.ignore) for part in path.split("/"))
        }
        known = self.catalog.find_many(source.name, wanted)
        plan.waiting = {r.id for r in known.values() if self.members.waiting(r)}
        redo = self._containers_of(known, wanted)
        for path, changed_at in wanted.items():
            record = known.get(path)
            if record is not None and record.parent_id is not None:
                continue  # a member (retried, re-dispatched): its file is processed again
            entry = source.stat(path)
            if entry is None or stat.S_ISDIR(entry.mode):  # gone, or now a directory
                if record is not None and record.status != DELETED:
                    plan.gone.append(record)
                continue
            self._plan_one(source, entry, record, plan, report, changed_at)
        for record, changed_at in redo:
            entry = source.stat(record.path)
            if entry is not None and stat.S_ISREG(entry.mode) and record.status != DELETED:
                self.catalog.mark_pending(record.id, "a member of it is processed again")
                self._plan_one(source, entry, replace(record, status=PENDING), plan, report,
                               changed_at)  # fmt: skip
        self._carry_out(source, plan, report, changes)
        report.seconds = time.monotonic() - started
        return report

    def _share_layer(self, source: Source, report: SyncReport) -> None:
        """The share's own permissions, read again: a change is one payload update of the
        share's points (recorded first: a writer that wrote the old layer looks again after)."""
        try:
            found = source.share_access()
        except TransientError as exc:  # no answer now: the layer recorded stays, if there is one
            if self.catalog.share_readers(source.name) is None:
                raise
            log.warning("share %s: its permissions not read again (%s); kept", source.name, exc)
            return
        allow, deny = found.access.as_lists()
        readers = ShareReaders(allow, deny, found.origin, found.warning)
        if found.warning:
            report.share_warnings[source.name] = found.warning
            log.warning("share %s: %s", source.name, found.warning)
        if self.catalog.share_readers(source.name) != readers:
            self.catalog.set_share_readers(source.name, readers)
            self.store.set_share_readers(source.name, allow, deny)
            metrics.DOCUMENTS.labels(source.name, "share_acl_changed").inc()

    def _forget_expired(self) -> None:
        """The points of documents deleted longer ago than ``keep_deleted_s``: removed."""
        expired = self.catalog.expired_kept()
        for doc_id in expired:
            self.store.delete_document(doc_id)
        self.catalog.forget_kept(expired)

    def _containers_of(
        self, known: Mapping[str, DocumentRecord], wanted: Mapping[str, float]
    ) -> list[tuple[DocumentRecord, float]]:
        """The files whose members these paths are (and that are not among the paths)."""
        files: dict[str, tuple[DocumentRecord, float]] = {}
        for path, record in known.items():
            if record.parent_id is None or record.parent_id in files:
                continue
            container = self.catalog.get(record.parent_id)
            if container is not None and container.path not in wanted:
                files[container.id] = (container, wanted[path])
        return list(files.values())

    def work_item(
        self, source: Source, record: DocumentRecord, changed_at: float
    ) -> WorkItem | None:
        """What to do for a dispatched document, from the file as it is now; None if it is no
        longer a file (the next plan of its share records that)."""
        entry = source.stat(record.path)
        if entry is None or not stat.S_ISREG(entry.mode):
            return None
        source.new_pass()
        access, note = source.permissions(record.path)
        # the catalog holds the readers read now: the writer gives them to the new version
        self._update_acl(record, access, note)
        kind = "changed" if record.version > 0 else "new"
        return WorkItem(source, entry, record.id, access, note, record, kind, changed_at)

    def _carry_out(
        self, source: Source, plan: Plan, report: SyncReport, changes: Mapping[str, float],
        known: Mapping[str, DocumentRecord] | None = None,
    ) -> None:  # fmt: skip
        """``known``: a reconcile's records of the whole share (its deletions are guarded)."""
        self._match_moves(source, plan, report)
        if known is not None:  # gone after the moves: deleted, unless the share looks emptied
            plan.gone = self.guard.check(source, known, plan.gone, report)
        self._delete(plan.gone, report, changes)
        for item in plan.work:  # durable before any work: a crash leaves them pending
            e = item.entry
            allow, deny = item.access.as_lists()
            self.catalog.upsert_seen(
                item.doc_id, source.name, e.path, e.size, e.mtime_ns, allow, deny, item.acl_note,
                filetype=format_name(e.path),
            )  # fmt: skip
        self.sink(plan.work, report, source.name)

    # -- one file -----------------------------------------------------------------------------
    def _plan_one(
        self, source: Source, entry: FileEntry, record: DocumentRecord | None, plan: Plan,
        report: SyncReport, changed_at: float,
    ) -> None:  # fmt: skip
        """Classify one file; an unexpected error costs that file only (recorded on it), an
        outage (the catalog or the index unreachable) stops the pass, to be retried whole."""
        try:
            self._classify(source, entry, record, plan, report, changed_at)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception("planning %s:%s failed", source.name, display(entry.path))
            reason = f"unexpected error while planning: {type(exc).__name__}: {exc}"
            self._planning_failed(source.name, entry, record, reason, report)

    def _planning_failed(
        self, share: str, entry: FileEntry, record: DocumentRecord | None, reason: str,
        report: SyncReport,
    ) -> None:  # fmt: skip
        try:
            doc_id = record.id if record is not None else self.catalog.new_id(share, entry.path)
            self.catalog.upsert_seen(
                doc_id, share, entry.path, entry.size, entry.mtime_ns, [], [], None,
                filetype=format_name(entry.path),
            )  # fmt: skip
            self.outcomes.error(doc_id, share, entry.path, FAILED, reason, report)
        except Exception as exc:  # not even recordable: reported, the share goes on
            if is_transient(exc):
                raise
            log.exception("recording the failure of %s:%s failed", share, display(entry.path))
            report.fail(share, entry.path, FAILED, reason)

    def _classify(
        self, source: Source, entry: FileEntry, record: DocumentRecord | None, plan: Plan,
        report: SyncReport, changed_at: float,
    ) -> None:  # fmt: skip
        share = source.name
        access, note = source.permissions(entry.path)
        live = record if record is not None and record.status != DELETED else None
        doc_id = record.id if record is not None else self.catalog.new_id(share, entry.path)
        problem = entry.problem or _unsupported(entry.path)
        if problem is not None:  # never opened, never sent to a parser
            if live and live.status == SKIPPED and live.error == problem:
                report.unchanged += 1
                return
            allow, deny = access.as_lists()
            self.catalog.upsert_seen(
                doc_id, share, entry.path, entry.size, entry.mtime_ns, allow, deny, note,
                filetype=format_name(entry.path),
            )  # fmt: skip
            if live and live.version > 0:  # a document replaced by a link or a FIFO
                self.store.delete_document(doc_id)
                report.deleted += self.members.delete(live)
            self.outcomes.error(doc_id, share, entry.path, SKIPPED, problem, report)
            return
        if live and live.id not in plan.waiting and self._unchanged(source, entry, live):
            report.unchanged += 1
            self._update_acl(live, access, note)
            return
        kind = "changed" if live and live.version > 0 else "new"
        plan.work.append(WorkItem(source, entry, doc_id, access, note, record, kind, changed_at))

    def _unchanged(self, source: Source, entry: FileEntry, record: DocumentRecord) -> bool:
        """Same size and mtime: not even hashed. Only the mtime moved: hashed, not parsed."""
        if record.status == PENDING:
            return False
        if record.captions == "pending" and self.recaption:
            return False  # the VLM was down: parse again (cached), add the captions
        if (record.size, record.mtime_ns) == (entry.size, entry.mtime_ns):
            return True
        if (
            record.status == INDEXED
            and record.content_hash
            and self.hash(source, entry) == record.content_hash
        ):
            self.catalog.mark_unchanged(record.id, entry.size, entry.mtime_ns)
            return True
        return False

    def hash(self, source: Source, entry: FileEntry) -> str | None:
        """The sha256 of the file's bytes now; None when it cannot be read."""
        try:
            data = source.read(entry.path, self.max_file_bytes).data
        except (IngestError, OSError):
            return None
        return hashlib.sha256(data).hexdigest()

    def _update_acl(self, record: DocumentRecord, access: Access, note: str | None) -> None:
        """A permission-only change: rewrite the payload in place, never re-embed."""
        allow, deny = access.as_lists()
        if (allow, deny, note) != (sorted(record.acl), sorted(record.acl_deny), record.acl_note):
            if record.version > 0:
                self.store.set_acl(record.id, allow, deny)
            self.catalog.set_acl(record.id, allow, deny, note)
            self.members.set_acl(record, allow, deny, note)
            metrics.DOCUMENTS.labels(record.share, "acl_changed").inc()

    # -- moves and deletes --------------------------------------------------------------------
    def _match_moves(self, source: Source, plan: Plan, report: SyncReport) -> None:
        """A new path holding the exact bytes of a vanished document is that document, moved."""
        by_size: dict[int, list[DocumentRecord]] = {}
        for rec in plan.gone:
            if rec.status == INDEXED and rec.content_hash:
                by_size.setdefault(rec.size, []).append(rec)
        if not by_size:
            return
        remaining = []
        for item in plan.work:
            # only to a path no live document holds (one seen there but never indexed, kind
            # "new", is still there: it is indexed, and reuses the vanished one's vectors)
            free = item.record is None or item.record.status == DELETED
            candidates = by_size.get(item.entry.size, []) if free else []
            digest = self.hash(source, item.entry) if candidates else None
            match = next((r for r in candidates if r.content_hash == digest), None)
            if match is None:
                remaining.append(item)
                continue
            try:
                self._repoint(match, item)
            except Exception as exc:  # this file is indexed instead; the pass goes on
                if is_transient(exc):
                    raise
                log.exception(
                    "moving %s to %s failed", display(match.path), display(item.entry.path)
                )
                remaining.append(item)
                continue
            candidates.remove(match)
            plan.gone.remove(match)
            report.moved += 1
        plan.work = remaining

    def _repoint(self, record: DocumentRecord, item: WorkItem) -> None:
        e = item.entry
        allow, deny = item.access.as_lists()
        self.catalog.repoint(record.id, e.path, e.size, e.mtime_ns, allow, deny)
        self.store.set_location(record.id, e.path, e.mtime_ns)
        if (allow, deny) != (sorted(record.acl), sorted(record.acl_deny)):
            self.store.set_acl(record.id, allow, deny)
        self.members.repoint(record, e.path, allow, deny)
        self.outcomes.searchable(item.share, "moved", item.changed_at)

    def _delete(
        self, records: list[DocumentRecord], report: SyncReport, changes: Mapping[str, float]
    ) -> None:
        keep = self.keep_deleted_s > 0
        until = datetime.now(UTC) + timedelta(seconds=self.keep_deleted_s) if keep else None
        for record in records:
            if keep and record.version:  # readable by nobody; its vectors kept for a while
                self.store.set_acl(record.id, [], [])
            else:
                self.store.delete_document(record.id)
            self.catalog.mark_deleted([record.id], until)
            report.deleted += 1 + self.members.delete(record)
            if record.path in changes:
                self.outcomes.searchable(record.share, "deleted", changes[record.path])


def _waiting(records: Iterable[DocumentRecord]) -> set[str]:
    """The files a member of which waits (an outage, a retry): processed again although they
    did not change."""
    return {r.parent_id for r in records if r.parent_id is not None and r.status == PENDING}


def _unsupported(path: str) -> str | None:
    try:
        filetype_of(path)
    except UnsupportedType as exc:
        return str(exc)
    return None
