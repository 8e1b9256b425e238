"""The documents inside a file (mail attachments, archive members) in the catalog and the index.

Each member is a document of its own, at the address ``FILE#MEMBER`` (``ingest.stages.members``),
with ``parent_id`` naming its file's document. It has the file's readers, and it comes, goes and
moves with its file: the planner carries those changes to the members (``MemberBook``). When the
file changes, its parse finds the members again: the changed ones are written like any document,
the unchanged ones are left as they are (their bytes were hashed, not parsed), the ones no longer
in the file are removed.
"""

from __future__ import annotations

from dataclasses import replace

from index.catalog import DELETED, INDEXED, PENDING, Catalog, DocumentRecord
from index.vectors import VectorIndex
from ingest.models import PreparedDocument, SourceFile
from ingest.stages.members import is_container
from ingest.stages.parse import format_name
from workers.sources.base import FileEntry
from workers.sync.outcomes import Outcomes
from workers.sync.report import SyncReport
from workers.sync.work import WorkItem


class MemberBook:
    """What happens to a file's members when something happens to the file."""

    def __init__(self, catalog: Catalog, store: VectorIndex) -> None:
        self.catalog = catalog
        self.store = store
        self.outcomes = Outcomes(catalog)

    def live(self, record: DocumentRecord) -> list[DocumentRecord]:
        if not is_container(record.path):
            return []
        return [m for m in self.catalog.members(record.id) if m.status != DELETED]

    def waiting(self, record: DocumentRecord) -> bool:
        """A member waits for its file to be processed again (an outage, a retry)."""
        return any(m.status == PENDING for m in self.live(record))

    # -- the planner's side: the file is gone, has new readers, or moved -----------------------
    def delete(self, record: DocumentRecord) -> int:
        members = self.live(record)
        for member in members:
            self.store.delete_document(member.id)
        self.catalog.mark_deleted(m.id for m in members)
        return len(members)

    def set_acl(
        self, record: DocumentRecord, allow: list[str], deny: list[str], note: str | None
    ) -> None:
        for member in self.live(record):
            if (allow, deny, note) == (
                sorted(member.acl),
                sorted(member.acl_deny),
                member.acl_note,
            ):
                continue
            if member.version > 0:
                self.store.set_acl(member.id, allow, deny)
            self.catalog.set_acl(member.id, allow, deny, note)

    def repoint(self, record: DocumentRecord, path: str, allow: list[str], deny: list[str]) -> None:
        for member in self.live(record):
            address = path + member.path[len(record.path) :]
            self.catalog.repoint(member.id, address, member.size, member.mtime_ns, allow, deny)
            if member.version > 0:
                self.store.set_location(member.id, address, member.mtime_ns)
                self.store.set_acl(member.id, allow, deny)

    # -- the processor's side: the file was parsed ---------------------------------------------
    def source_file(self, item: WorkItem) -> SourceFile:
        """What a parse process needs, with the members the index holds (hashed, not parsed)."""
        file = item.file
        if item.record is None or not is_container(item.entry.path):
            return file
        prefix = item.entry.path + "#"
        known = tuple(
            (m.path[len(prefix) :], m.content_hash)
            for m in self.live(item.record)
            if m.status == INDEXED and m.content_hash and m.path.startswith(prefix)
        )
        return replace(file, known_members=known)

    def expand(
        self, item: WorkItem, doc: PreparedDocument, report: SyncReport
    ) -> list[tuple[WorkItem, PreparedDocument]]:
        """The file's own document and its changed members, to be embedded and written; the
        members that failed are recorded, the ones gone from the file removed."""
        if doc.members is None:
            return [(item, doc)]
        work = [(item, replace(doc, members=None))]
        existing = {m.path: m for m in self.catalog.members(item.doc_id)}
        allow, deny = item.access.as_lists()
        found: set[str] = set()
        for member in doc.members:
            address = f"{item.entry.path}#{member.address}"
            found.add(address)
            record = existing.get(address)
            if member.unchanged and record is not None and record.status != DELETED:
                continue
            doc_id = record.id if record is not None else self.catalog.new_id(item.share, address)
            mtime_ns = doc.parsed.mtime_ns
            self.catalog.upsert_seen(
                doc_id, item.share, address, member.size, mtime_ns, allow, deny, item.acl_note,
                parent_id=item.doc_id, filetype=format_name(member.address),
            )  # fmt: skip
            if member.error is not None:
                status, reason = member.error
                self.outcomes.error(doc_id, item.share, address, status, reason, report)
                continue
            if member.document is None:  # hashed as unchanged, but no longer indexed
                self.catalog.mark_pending(doc_id, "indexed again with its file's next change")
                continue
            live = record is not None and record.status != DELETED and record.version > 0
            entry = FileEntry(
                address, member.size, mtime_ns, item.entry.mode, item.entry.uid, item.entry.gid
            )
            work.append((
                WorkItem(
                    item.source, entry, doc_id, item.access, item.acl_note, record,
                    "changed" if live else "new", item.changed_at, container=item.entry.path,
                ),
                member.document,
            ))  # fmt: skip
        for address, record in existing.items():
            if address not in found and record.status != DELETED:
                self.store.delete_document(record.id)
                self.catalog.mark_deleted([record.id])
                report.deleted += 1
        return work
