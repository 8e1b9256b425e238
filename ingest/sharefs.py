"""Reaching a path under a share root: never through a symbolic link, whatever its length.

Paths are text forms (``ingest.paths``). A share may nest folders past the kernel's PATH_MAX
(4,096 bytes: 60 folders of 250-byte names), where a plain ``open`` or ``stat`` of the whole path
fails with ENAMETOOLONG. Here the folders are opened one by one, each relative to the one above
(``openat`` with O_NOFOLLOW | O_DIRECTORY), so a long path works and a parent that is a symbolic
link is refused instead of followed (for reads and for metadata alike: a watcher event under a
linked folder never describes a file outside the share).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from ingest.errors import OutsideShare
from ingest.paths import to_bytes

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@lru_cache(maxsize=256)
def real_root(root: str) -> bytes:
    """The share root with its links resolved, remembered until ``forget_roots`` (each pass
    over a share starts with it: a root re-pointed between passes is seen at the next)."""
    return os.path.realpath(os.fsencode(root))


def forget_roots() -> None:
    real_root.cache_clear()


def components(relpath: str) -> list[bytes]:
    """The names of ``relpath``; raises OutsideShare for an absolute path or a ``..``."""
    raw = to_bytes(relpath)
    parts = raw.split(b"/")
    if raw.startswith(b"/") or b".." in parts:
        raise OutsideShare(f"path {relpath!r} is not inside the share")
    return [p for p in parts if p not in (b"", b".")]


@contextmanager
def parent_fd(root: str, relpath: str, cached_root: bool = False) -> Iterator[tuple[int, bytes]]:
    """(an open descriptor of ``relpath``'s folder, its last name), every folder on the way
    opened without following a link. OutsideShare if one is a symbolic link; OSError as the
    kernel says otherwise (ENOENT, EACCES, ENOTDIR). ``cached_root``: the root as resolved at the
    start of the pass (metadata of many files); reads resolve it each time (a parse process
    lives longer than a pass)."""
    names = components(relpath)
    if not names:
        raise OutsideShare("the share root is not a document")
    top = real_root(root) if cached_root else os.path.realpath(os.fsencode(root))
    fd = os.open(top, _DIR_FLAGS)
    try:
        for name in names[:-1]:
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(name, fd):
                    raise OutsideShare(
                        "a parent directory is a symbolic link; links are not followed"
                    ) from exc
                raise
            os.close(fd)
            fd = nxt
        yield fd, names[-1]
    finally:
        os.close(fd)


def _is_link(name: bytes, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


@contextmanager
def metadata_path(root: str, relpath: str) -> Iterator[bytes]:
    """A path naming ``relpath`` for calls that take a path but no folder descriptor (lstat,
    getxattr): the last name under its folder, opened folder by folder without following a
    link, through ``/proc/self/fd`` (l* calls never follow the final name). The share root
    itself ("") is its resolved path."""
    if not components(relpath):
        yield real_root(root)
        return
    with parent_fd(root, relpath, cached_root=True) as (fd, name):
        yield b"/proc/self/fd/%d/%s" % (fd, name)


def lstat(root: str, relpath: str) -> os.stat_result:
    """``lstat`` of a path under the share (OSError when it is gone or cannot be reached)."""
    with metadata_path(root, relpath) as path:
        return os.lstat(path)
