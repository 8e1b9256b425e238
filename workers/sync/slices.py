"""The large-document pass: a document of ``large_bytes`` and up is not one unit. A large text
file is parsed in parts (the next part parsed while this one is embedded); any large document is
embedded and written in slices of ``slice_chunks`` through ``index.writer``'s ``SlicedVersion``
(readers keep the old version until the new one is complete). ``pause`` is called before each
slice (the embedded service's live lane goes first there); progress is on the ``WorkBoard``.
Neither its chunks nor its vectors are ever all in memory at once; an error costs this document
only (its slices are removed, the old version stays)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from index.catalog import Catalog
from index.vectors import VectorIndex
from index.writer import DocumentVersion, SlicedVersion, VersionedWriter
from ingest.errors import EmptyDocument, IngestError
from ingest.models import PreparedDocument, SourceFile
from ingest.stages.parts import can_split, part_count
from workers.sync.board import WorkBoard
from workers.sync.commit import DocumentCommitter
from workers.sync.embedding import ReusingEmbedder
from workers.sync.members import MemberBook
from workers.sync.outcomes import Outcomes
from workers.sync.parsepool import Parser
from workers.sync.report import Progress, SyncReport
from workers.sync.work import WorkItem

log = logging.getLogger(__name__)

#: defaults (settings part_mb, slice_chunks)
PART_BYTES = 1 << 20
SLICE_CHUNKS = 64


@dataclass
class _Version:
    """The version being written, and the stored one whose vectors it may reuse."""

    sliced: SlicedVersion
    content_hash: str
    read: tuple[int, int]  # the file's size and mtime when its first part was read
    old_id: str
    old: int
    known: dict[str, int]  # the old version's text hashes -> chunk indexes


class LargeDocuments:
    def __init__(
        self, pool: Parser | None, members: MemberBook, embedding: ReusingEmbedder,
        committer: DocumentCommitter, writer: VersionedWriter, catalog: Catalog,
        store: VectorIndex, outcomes: Outcomes, board: WorkBoard, stop: threading.Event,
        pause: Callable[[], None] = lambda: None, *, contain_write_errors: bool = True,
        part_bytes: int = PART_BYTES, slice_chunks: int = SLICE_CHUNKS,
    ) -> None:  # fmt: skip
        self.pool = pool
        self.members = members
        self.embedding = embedding
        self.committer = committer
        self.writer = writer
        self.catalog = catalog
        self.store = store
        self.outcomes = outcomes
        self.board = board
        self.stop = stop
        #: called before each slice: the embedded service's live lane runs there
        self.pause = pause
        self.contain_write_errors = contain_write_errors
        self.part_bytes = part_bytes
        self.slice_chunks = slice_chunks

    def process(self, item: WorkItem, report: SyncReport, bar: Progress | None = None) -> None:
        entry = item.entry
        self.board.start(item.doc_id, item.share, entry.path, entry.size)
        parts = _Parts(self.pool, self._sources(item))
        try:
            self._write(item, parts, report, bar)
        except IngestError as exc:
            self.committer.error(item, exc, report)
        except Exception as exc:  # the store or the catalog failed: retry later, lose nothing
            if not self.contain_write_errors:
                raise
            log.exception("writing %s/%s failed", item.share, entry.path)
            self.committer.write_failed(item, exc, report)
        finally:
            parts.close()
            self.board.finish(item.doc_id)

    def _sources(self, item: WorkItem) -> list[SourceFile]:
        source = self.members.source_file(item)
        if not can_split(item.entry.path):
            return [source]
        count = part_count(item.entry.size, self.part_bytes)
        return [replace(source, part=k, part_bytes=self.part_bytes) for k in range(count)]

    def _begin(self, item: WorkItem, first: PreparedDocument) -> _Version:
        parsed = first.parsed
        old_id, old, known = item.doc_id, 0, {}
        previous = self.embedding.previous(item, parsed.content_hash)
        if previous is not None:
            old_id, old = previous
            known = self.store.stored_hashes(old_id, old)
        allow, deny = item.access.as_lists()
        sliced = self.writer.begin(DocumentVersion(
            doc_id=item.doc_id, share=item.share, path=item.entry.path, acl=allow, acl_deny=deny,
            content_hash=parsed.content_hash, size=parsed.size, mtime_ns=parsed.mtime_ns,
            filetype=parsed.filetype, chunks=(),
        ))  # fmt: skip
        return _Version(sliced, parsed.content_hash, (parsed.size, parsed.mtime_ns), old_id, old,
                        known)  # fmt: skip

    def _write(self, item: WorkItem, parts: _Parts, report: SyncReport, bar: Any) -> None:
        v: _Version | None = None
        done = 0
        try:
            for doc, last in parts:
                v = v or self._begin(item, doc)
                if (doc.parsed.size, doc.parsed.mtime_ns) != v.read:
                    v.sliced.abandon()  # this part read the file after it changed
                    report.superseded += 1
                    return
                chunks = [replace(c, index=done + i) for i, c in enumerate(doc.chunks)]
                for start in range(0, len(chunks), self.slice_chunks):
                    self.pause()
                    if self.stop.is_set() or not item.still_current(*v.read):
                        v.sliced.abandon()  # stopping, or the file changed: its change comes
                        report.superseded += not self.stop.is_set()
                        return
                    piece = chunks[start : start + self.slice_chunks]
                    final = last and start + self.slice_chunks >= len(chunks)
                    v.sliced.add(self.embedding.embed_slice(v.old_id, v.old, v.known, piece,
                                                            report), final)  # fmt: skip
                    self._advance(item, parts, done + start + len(piece), bar)
                done += len(chunks)
            if v is None or done == 0:
                raise EmptyDocument("no text found in the document")
            current = self.catalog.get(item.doc_id)  # a permission change meanwhile holds
            acl = (current.acl, current.acl_deny) if current else item.access.as_lists()
            if not v.sliced.finish(v.content_hash, acl, lambda: item.still_current(*v.read)):
                report.superseded += 1
                return
        except BaseException:
            if v is not None:
                v.sliced.abandon()
            raise
        report.count(item.kind)
        report.formats[v.sliced.doc.filetype] += 1
        self.outcomes.searchable(item.share, item.kind, item.changed_at, item.backlog)

    def _advance(self, item: WorkItem, parts: _Parts, done: int, bar: Any) -> None:
        total, estimated = parts.estimate(done)
        self.board.advance(item.doc_id, done, total, estimated)
        postfix = getattr(bar, "set_postfix_str", None)
        if postfix is not None:
            postfix(self.board.line(item.doc_id), refresh=False)


class _Parts:
    """The parts of a large document, parsed one ahead of the one being embedded; iterating
    gives (part, is it the last)."""

    def __init__(self, pool: Parser | None, sources: list[SourceFile]) -> None:
        assert pool is not None, "this indexer has no parse pool"
        self.pool = pool
        self.sources = sources
        self.futures: deque[Future[PreparedDocument]] = deque()
        self.next = 0
        self.read = 0  # parts read
        self.chunks = 0  # their chunks

    def _submit(self) -> None:
        while self.next < len(self.sources) and len(self.futures) < 2:
            self.futures.append(self.pool.submit(self.sources[self.next]))
            self.next += 1

    def __iter__(self) -> Iterator[tuple[PreparedDocument, bool]]:
        for k in range(len(self.sources)):
            self._submit()
            outcome = self.pool.outcome(self.futures.popleft())
            if isinstance(outcome, IngestError):
                raise outcome
            whole = outcome.source.part < 0
            self.read, self.chunks = k + 1, self.chunks + len(outcome.chunks)
            last = whole or k == len(self.sources) - 1
            yield outcome, last
            if last:
                return

    def estimate(self, done: int) -> tuple[int, bool]:
        """(chunks in all, estimated?): exact once every part is read."""
        if self.read >= len(self.sources):
            return self.chunks, False
        return int(self.chunks * len(self.sources) / max(self.read, 1)), True

    def close(self) -> None:
        for future in self.futures:
            future.cancel()
