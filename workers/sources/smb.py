"""A share on a Windows file server or NAS (``smb://HOST[:PORT]/SHARE[/FOLDER]``), read over SMB
with the service account: list, stat, read, and permissions from each file's security
descriptor as Windows evaluates them (``index.permissions.ntfs``); tokens are ``sid:S-1-...``. A file whose
descriptor cannot be read is readable by nobody. Reparse points (links, junctions) are never
followed. Changes are reported by the server (SMB2 CHANGE_NOTIFY on the whole tree), or found by
polling (a snapshot of the tree compared every interval) where it sends none or the share is
named in ``polling_shares``; the reconcile catches anything else."""

from __future__ import annotations

import logging
import queue
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from index.permissions.names import SystemDirectory
from index.permissions.ntfs import (
    BadDescriptor,
    ReadAccess,
    SecurityDescriptor,
    parse_descriptor,
    parse_sddl,
    read_access,
)
from index.permissions.readers import NOBODY, OPEN, Access, ShareAccess
from index.permissions.rules import RuleBook, apply_rules
from ingest import smbfs, srvsvc
from ingest.errors import IngestError
from ingest.guards import FileContent
from ingest.paths import from_bytes
from workers.sources.base import RESCAN, Change, FileEntry, is_ignored

log = logging.getLogger(__name__)

_FILE, _DIR, _LINK = stat.S_IFREG | 0o444, stat.S_IFDIR | 0o555, stat.S_IFLNK | 0o777


#: what an operator grants so that the share's permissions can be read (the README's words)
GRANT = ("add the service account to the file server's local Power Users group (or Server "
         "Operators, or Administrators), or give the share's permissions in the configuration "
         "as share_permissions.{share} (SDDL)")  # fmt: skip


@dataclass(frozen=True)
class ShareDescriptor:
    """A share's own security descriptor and where it came from (None: unknown, and why)."""

    descriptor: SecurityDescriptor | None
    origin: str  # "server", "config", "unknown"
    problem: str | None = None


class SmbShare:
    """``Source`` on an SMB share. ``share_sddl``: the share's permissions from the
    configuration, used where the server does not give them; ``missing``: what a share whose
    permissions are known from neither means ("nothing": readable by nobody; "ntfs": the files'
    NTFS permissions alone)."""

    def __init__(self, name: str, url: str, username: str | None, password: str | None,
                 rules: RuleBook, share_sddl: str | None = None,
                 missing: str = "nothing") -> None:  # fmt: skip
        self.name = name
        self.smb = smbfs.SmbLocation.parse(url)
        self.location = self.smb.url
        self.rules = rules
        self.share_sddl = share_sddl
        self.missing = missing
        self.reader = smbfs.SmbReader(self.location, username, password)
        smbfs.configure(self.smb, username, password)

    # -- listing ---------------------------------------------------------------------------
    def scan(self, ignore: list[str]) -> Iterator[FileEntry]:
        folders = [""]
        while folders:
            rel_dir = folders.pop()
            try:
                entries = smbfs.listdir(self.smb, rel_dir)
            except IngestError as exc:
                if isinstance(exc, smbfs.ShareUnavailable):
                    raise
                if rel_dir == "":  # the share itself: the whole pass stops, loudly
                    raise smbfs.ShareUnavailable(f"cannot list {self.location}: {exc}") from exc
                log.warning("folder %s of %s not listed: %s", rel_dir, self.location, exc)
                continue  # a folder gone or unreadable: the next reconcile sees it
            for name, st in entries:
                if is_ignored(name, ignore):
                    continue
                rel = f"{rel_dir}/{_text(name)}" if rel_dir else _text(name)
                if st.is_dir and not st.is_link:
                    folders.append(rel)
                else:
                    yield _entry(rel, st)

    def stat(self, path: str) -> FileEntry | None:
        st = smbfs.lstat(self.smb, path)
        return _entry(path, st) if st is not None else None

    def read(self, path: str, max_bytes: int) -> FileContent:
        return self.reader.read(path, max_bytes)

    # -- permissions -----------------------------------------------------------------------
    def permissions(self, path: str) -> tuple[Access, str | None]:
        try:
            sd = parse_descriptor(smbfs.security_descriptor(self.smb, path))
        except (IngestError, BadDescriptor) as exc:
            if isinstance(exc, smbfs.ShareUnavailable):
                raise  # an outage, not this file's permissions
            return NOBODY, f"cannot read the security descriptor: {exc}; readable by nobody"
        tokens = _sid_tokens(read_access(sd))
        return apply_rules(tokens, self.rules.rules, self.name, path, SystemDirectory()), None

    def share_descriptor(self) -> ShareDescriptor:
        """The share's own permissions: the server's (SRVSVC NetrShareGetInfo, level 502), else
        the configuration's; ShareUnavailable when the server cannot be reached at all."""
        try:
            info = srvsvc.share_info(self.smb)
            if info.descriptor is None:
                problem = (
                    f"{self.smb.host} gave no security descriptor for share {self.smb.share!r}"
                )
            else:
                return ShareDescriptor(parse_descriptor(info.descriptor), "server")
        except smbfs.ShareUnavailable:
            raise
        except (IngestError, BadDescriptor) as exc:
            problem = str(exc)
        if self.share_sddl is not None:
            return ShareDescriptor(parse_sddl(self.share_sddl), "config", problem)
        return ShareDescriptor(None, "unknown", problem)

    def share_access(self) -> ShareAccess:
        found = self.share_descriptor()
        if found.descriptor is not None:
            return ShareAccess(_sid_tokens(read_access(found.descriptor)), found.origin)
        grant = GRANT.format(share=self.name)
        if self.missing == "ntfs":
            return ShareAccess(OPEN, "unknown", f"the share's permissions are unknown "
                               f"({found.problem}): the files' NTFS permissions alone decide "
                               f"(share_permissions_missing = ntfs); to be exact, {grant}")  # fmt: skip
        return ShareAccess(NOBODY, "unknown", f"the share's permissions are unknown "
                           f"({found.problem}): nothing of share {self.name!r} is searchable "
                           f"(share_permissions_missing = nothing); {grant}")  # fmt: skip

    def new_pass(self) -> None:
        pass

    def root_identity(self) -> str | None:
        try:
            found = smbfs.lstat(self.smb, "")
        except IngestError:
            return None
        return f"smb:{self.location}" if found is not None else None

    # -- changes ---------------------------------------------------------------------------
    def watch(
        self, out: queue.Queue[Change], polling: bool, interval_s: float
    ) -> SmbNotifier | SmbPoller:
        watch: SmbNotifier | SmbPoller
        if polling:
            watch = SmbPoller(self, out, max(interval_s, 1.0))
        else:
            watch = SmbNotifier(self, out, max(interval_s, 1.0))
        watch.start()
        return watch


class SmbNotifier:
    """The server's own change notifications (SMB2 CHANGE_NOTIFY, WATCH_TREE) on two handles of
    the share's folder: names, sizes and writes; security descriptors. A file's event names the
    file; a folder created, moved in or given new permissions asks for a reconcile of the share
    (files appear below it, or who may read them changes). After the server dropped the watch it
    is opened again, and the share reconciled (what happened meanwhile was not reported). A
    server that sends no notifications is polled instead."""

    def __init__(self, share: SmbShare, out: queue.Queue[Change], interval_s: float) -> None:
        self.share = share
        self.out = out
        self.interval_s = interval_s
        self.mode = "notify"
        self._stop = threading.Event()
        self._poller: SmbPoller | None = None
        self._thread = threading.Thread(target=self._run, name=f"smb-notify-{share.name}",
                                        daemon=True)  # fmt: skip

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.stop()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff, missed = 1.0, False
        while not self._stop.is_set():
            watches: list[smbfs.TreeWatch] = []
            try:
                watches = [smbfs.TreeWatch(self.share.smb, smbfs.CONTENT),
                           smbfs.TreeWatch(self.share.smb, smbfs.SECURITY)]  # fmt: skip
                if missed:  # changes made while no watch was open
                    self._put(RESCAN, "other")
                    missed = False
                while not self._stop.is_set():
                    for w in watches:
                        w.arm()
                    ready = [w for w in watches if w.ready]
                    if not ready:
                        self._stop.wait(0.2)
                        continue
                    for w in ready:
                        self._report(w.completion, w.take())
                    backoff = 1.0
            except smbfs.NotifyUnsupported as exc:
                log.warning("%s: %s; polling it every %.0f s", self.share.location, exc,
                            self.interval_s)  # fmt: skip
                self._fall_back()
                return
            except Exception as exc:  # the server dropped the connection or is down
                log.warning("change notifications of %s stopped (%s); watching again in %.0f s",
                            self.share.location, exc, backoff)  # fmt: skip
                missed = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
            finally:
                for w in watches:
                    w.close()

    def _fall_back(self) -> None:
        self.mode = "polling"
        self._poller = SmbPoller(self.share, self.out, self.interval_s)
        if not self._stop.is_set():
            self._poller.start()

    def _report(self, completion: int, actions: list[tuple[int, str]]) -> None:
        if not actions:  # the server's buffer overflowed: compare the whole tree
            self._put(RESCAN, "other")
            return
        for action, name in actions:
            rel = "/".join(_text(n) for n in name.split("/") if n)
            if not rel:
                continue
            if action in (smbfs.REMOVED, smbfs.RENAMED_OLD):
                self._put(rel, "close")  # a file: gone; a folder: its files report their own
                continue
            try:
                st = smbfs.lstat(self.share.smb, rel)
            except IngestError:
                st = None  # gone again, or unreadable: the planner looks at it itself
            if st is not None and st.is_dir and not st.is_link:
                folder_news = action in (smbfs.ADDED, smbfs.RENAMED_NEW)
                if folder_news or completion == smbfs.SECURITY:
                    self._put(RESCAN, "other")
                continue  # a folder's own write time: its files report themselves
            self._put(rel, "close")

    def _put(self, path: str, kind: str) -> None:
        self.out.put(Change(self.share.name, path, time.monotonic(), time.time(), kind))


class SmbPoller:
    """Compares the share's tree every interval and reports each path that appeared, changed
    or vanished (by size, mtime and file id)."""

    def __init__(self, share: SmbShare, out: queue.Queue[Change], interval_s: float) -> None:
        self.share = share
        self.out = out
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"smb-poll-{share.name}",
                                        daemon=True)  # fmt: skip

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _snapshot(self) -> dict[str, tuple[int, int]] | None:
        try:
            return {e.path: (e.size, e.mtime_ns) for e in self.share.scan([])}
        except Exception as exc:  # the server is down: the next round tries again
            log.warning("polling %s failed: %s", self.share.location, exc)
            return None

    def _run(self) -> None:
        before = self._snapshot()
        while not self._stop.wait(self.interval_s):
            now = self._snapshot()
            if now is None or before is None:
                before = now if now is not None else before
                continue
            at, wall = time.monotonic(), time.time()
            for path in sorted(set(before) | set(now)):
                if before.get(path) != now.get(path):
                    self.out.put(Change(self.share.name, path, at, wall, "close"))
            before = now


def _sid_tokens(access: ReadAccess) -> Access:
    return Access(frozenset(f"sid:{s}" for s in access.allow),
                  frozenset(f"sid:{s}" for s in access.deny))  # fmt: skip


def _text(name: str) -> str:
    """SMB names are UTF-16: their text form is themselves (a lone surrogate escaped)."""
    return from_bytes(name.encode("utf-8", "surrogatepass"))


def _entry(rel: str, st: smbfs.SmbStat) -> FileEntry:
    if st.is_link:
        return FileEntry(rel, st.size, st.mtime_ns, _LINK, 0, 0,
                         "a reparse point (symbolic link or junction); not followed")  # fmt: skip
    return FileEntry(rel, st.size, st.mtime_ns, _DIR if st.is_dir else _FILE, 0, 0)
