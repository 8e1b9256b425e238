"""Walks a share without leaving it: symlinks are never followed, special files never opened."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ingest import paths, sharefs
from ingest.errors import IngestError
from ingest.guards import describe_mode, link_target

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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


def is_ignored(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


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
