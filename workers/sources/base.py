"""Where a share's files come from: one Protocol, so that the planner, the processor and the
watcher never ask what kind of share they work on."""

from __future__ import annotations

import fnmatch
import queue
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from index.permissions.readers import Access, ShareAccess
from ingest.guards import FileContent
from ingest.readers import ShareReader


@dataclass(frozen=True)
class FileEntry:
    """A path of a share with its ``lstat``; ``problem`` says why it will not be opened."""

    path: str  # relative to the share root, POSIX separators, text form (ingest.paths)
    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int
    problem: str | None = None


@dataclass(frozen=True)
class Change:
    """A watcher event: which path of which share changed, and when."""

    share: str
    path: str  # relative to the share root, text form (ingest.paths); RESCAN for the whole share
    at: float  # monotonic time of the event
    wall: float  # wall-clock time of the event (what freshness is measured from)
    kind: str = "other"  # "write": created or modified; "close": closed after writing


#: the path that stands for "reconcile the whole share"
RESCAN = ""


class Watch(Protocol):
    """A running watch of a share; ``stop`` ends it."""

    def stop(self) -> None: ...


class Source(Protocol):
    """One share: list, stat, read, permissions, watch. Paths are text forms, relative to the
    share root; nothing outside the share is ever read."""

    #: the share's name
    name: str
    #: where the share is (the folder, or the share's URL), as ``SourceFile.root`` names it
    location: str
    @property
    def reader(self) -> ShareReader:
        """How a parse process reads its files (picklable; ``ingest.readers``)."""

    def scan(self, ignore: list[str]) -> Iterator[FileEntry]:
        """Every file of the share (not folders), ignored names left out."""

    def stat(self, path: str) -> FileEntry | None:
        """One path now, or None when it is gone."""

    def read(self, path: str, max_bytes: int) -> FileContent:
        """The bytes of a regular file, through ``reader`` (IngestError subclasses say why not)."""

    def permissions(self, path: str) -> tuple[Access, str | None]:
        """Who may read it (share rules applied), and why nobody may when they cannot be read."""

    def share_access(self) -> ShareAccess:
        """Who the share itself admits (a Windows share's own permissions), before any file's
        permissions: read at each reconcile; a change is a payload update of the share."""

    def new_pass(self) -> None:
        """A new pass over the share starts: forget what was cached about its folders."""

    def root_identity(self) -> str | None:
        """What the share's root is (a folder on a device): another value than at the last pass
        means a mount that dropped or changed, or a folder replaced; None: the root is gone."""

    def watch(self, out: queue.Queue[Change], polling: bool, interval_s: float) -> Watch:
        """Report changes into ``out`` until stopped (polling: for shares that send no events)."""


def is_ignored(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
