"""Walks a share without leaving it: symlinks are never followed, special files never opened."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ingest.guards import describe_mode


@dataclass(frozen=True)
class FileEntry:
    """A path of a share with its ``lstat``; ``problem`` says why it will not be opened."""

    path: str  # relative to the share root, POSIX separators
    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int
    problem: str | None = None


def is_ignored(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def scan(root: str, ignore: list[str]) -> Iterator[FileEntry]:
    """Every non-ignored entry under ``root`` that is not a directory."""
    real_root = os.path.realpath(root)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(real_root, rel_dir)) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # vanished or unreadable directory: reconciliation will see it next time
        for entry in entries:
            if is_ignored(entry.name, ignore):
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)
                continue
            yield _entry(real_root, rel, st)


def stat_path(root: str, rel: str) -> FileEntry | None:
    """The entry for one path (a watcher event), or None if it no longer exists."""
    real_root = os.path.realpath(root)
    try:
        st = os.lstat(os.path.join(real_root, rel))
    except OSError:
        return None
    return _entry(real_root, rel, st)


def _entry(real_root: str, rel: str, st: os.stat_result) -> FileEntry:
    problem = None
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(os.path.join(real_root, rel))
        inside = target.startswith(real_root + os.sep)
        problem = f"symbolic link to {'inside' if inside else 'outside'} the share; links are not followed"
    elif not stat.S_ISREG(st.st_mode):
        problem = f"{describe_mode(st.st_mode)}, not a regular file; never opened"
    return FileEntry(rel, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid, problem)
