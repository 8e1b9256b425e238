"""A share that is a local folder (or a mount): walked without leaving it (symlinks never
followed, special files never opened), read through folder descriptors, permissions from POSIX
modes and ACLs, changes from inotify (or polling)."""

from __future__ import annotations

import os
import queue
import stat
import time
from collections.abc import Iterator

from watchdog.events import (
    FileClosedNoWriteEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from index.permissions.posix import PermissionResolver
from index.permissions.readers import NOBODY, OPEN, Access, ShareAccess
from ingest import paths, sharefs
from ingest.errors import IngestError
from ingest.guards import FileContent, describe_mode, link_target
from ingest.readers import LocalReader
from workers.sources.base import RESCAN, Change, FileEntry, is_ignored
from workers.sources.mounts import network_mount_note

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def scan(root: str, ignore: list[str]) -> Iterator[FileEntry]:
    """Every non-ignored entry under ``root`` that is not a directory, paths in text form.

    Each folder is opened relative to its parent (never through a link, whatever the depth of
    the tree or the length of its names), one descriptor per level of the walk."""
    try:
        top = os.open(os.path.realpath(root), _DIR_FLAGS)
    except OSError:
        return  # the share root is gone: reconciliation will see it next time
    stack: list[tuple[int, str, list[str]]] = [(top, "", [])]
    try:
        yield from _list(root, stack, ignore)
        while stack:
            fd, rel_dir, subdirs = stack[-1]
            if not subdirs:
                os.close(stack.pop()[0])
                continue
            name = subdirs.pop()
            try:
                child = os.open(paths.to_bytes(name.rsplit("/", 1)[-1]), _DIR_FLAGS, dir_fd=fd)
            except (OSError, paths.BadPath):
                continue  # vanished, replaced by a link, or unreadable: seen next time
            stack.append((child, name, []))
            yield from _list(root, stack, ignore)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _list(
    root: str, stack: list[tuple[int, str, list[str]]], ignore: list[str]
) -> Iterator[FileEntry]:
    """The files of the folder on top of ``stack``; its subfolders go into its frame."""
    fd, rel_dir, subdirs = stack[-1]
    try:
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    folders = []
    for entry in entries:
        if is_ignored(entry.name, ignore):
            continue
        name = paths.from_os(entry.name)
        rel = f"{rel_dir}/{name}" if rel_dir else name
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            folders.append(rel)
            continue
        yield _entry(root, rel, st)
    subdirs.extend(reversed(folders))


def stat_path(root: str, rel: str) -> FileEntry | None:
    """The entry for one path (a watcher event, text form), or None if it no longer exists."""
    try:
        st = sharefs.lstat(root, rel)
    except (OSError, IngestError, paths.BadPath):
        return None
    return _entry(root, rel, st)


def _entry(root: str, rel: str, st: os.stat_result) -> FileEntry:
    problem = None
    if stat.S_ISLNK(st.st_mode):
        problem = f"symbolic link to {link_target(root, rel)} the share; links are not followed"
    elif not stat.S_ISREG(st.st_mode):
        problem = f"{describe_mode(st.st_mode)}, not a regular file; never opened"
    return FileEntry(rel, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid, problem)


class LocalFolder:
    """``Source`` on a local folder."""

    def __init__(self, name: str, root: str, permissions: PermissionResolver) -> None:
        self.name = name
        self.location = root
        self.reader = LocalReader(root)
        self.resolver = permissions
        #: a CIFS/NFS mount: its mode bits are invented by the client, never taken
        self.untrusted = network_mount_note(root)

    def scan(self, ignore: list[str]) -> Iterator[FileEntry]:
        return scan(self.location, ignore)

    def stat(self, path: str) -> FileEntry | None:
        return stat_path(self.location, path)

    def read(self, path: str, max_bytes: int) -> FileContent:
        return self.reader.read(path, max_bytes)

    def permissions(self, path: str) -> tuple[Access, str | None]:
        if self.untrusted:
            return NOBODY, self.untrusted
        return self.resolver.resolve(self.name, self.location, path)

    def share_access(self) -> ShareAccess:
        return ShareAccess(OPEN, "local")  # who reads is the files' own business

    def root_identity(self) -> str | None:
        try:
            st = os.stat(os.path.realpath(self.location))
        except OSError:
            return None
        return f"{st.st_dev}:{st.st_ino}" if stat.S_ISDIR(st.st_mode) else None

    def new_pass(self) -> None:
        self.resolver.reset()
        sharefs.forget_roots()
        self.untrusted = network_mount_note(self.location)  # a mount may come or go

    def watch(self, out: queue.Queue[Change], polling: bool, interval_s: float) -> BaseObserver:
        """inotify; a polling observer for a network mount (no inotify events for writes made
        on other machines). Started; ``stop`` ends it."""
        observer: BaseObserver = PollingObserver(timeout=interval_s) if polling else Observer()
        observer.schedule(
            ShareEventHandler(self.name, self.location, out),
            os.path.realpath(self.location),
            recursive=True,
        )
        observer.start()
        return observer


class ShareEventHandler(FileSystemEventHandler):
    """watchdog events -> share-relative paths (text forms). File events name the paths to look
    at again; directory events (a folder created, moved, deleted, or its permissions changed) ask
    for a reconcile of the share. Reads (opened, closed without writing) are ignored, so a worker
    reading the share never triggers itself."""

    def __init__(self, share: str, root: str, out: queue.Queue[Change]) -> None:
        self.share = share
        self.root = os.path.realpath(root)
        self.out = out

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileOpenedEvent | FileClosedNoWriteEvent):
            return
        now, wall = time.monotonic(), time.time()
        if event.is_directory:
            # created, moved, deleted: files appear or vanish below; attrib: a chmod, chown or
            # setfacl changes who can traverse it, so who can read every file below
            if event.event_type in ("created", "moved", "deleted", "attrib"):
                self.out.put(Change(self.share, RESCAN, now, wall))
            return
        kind = {"created": "write", "modified": "write", "closed": "close"}.get(
            event.event_type, "other"
        )
        rel = self._relative(event.src_path)
        if rel:
            self.out.put(Change(self.share, rel, now, wall, kind))
        dest = self._relative(getattr(event, "dest_path", ""))
        if dest:  # the new name of a moved file is complete: it was written under the old one
            self.out.put(Change(self.share, dest, now, wall, "close"))

    def _relative(self, raw: str | bytes) -> str | None:
        path = os.fsdecode(raw)
        if not path:
            return None
        rel = os.path.relpath(path, self.root)
        if rel.startswith("..") or rel == ".":
            return None
        return paths.from_os(rel.replace(os.sep, "/"))
