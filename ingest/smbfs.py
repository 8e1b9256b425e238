"""Files on an SMB share (a Windows file server, a NAS), over SMB 2/3 with smbprotocol: no kernel
mount, no root. Locations are ``smb://HOST[:PORT]/SHARE[/FOLDER...]``; paths below them are text
forms (``ingest.paths``), ``/``-separated. Sessions are registered once per process with the
service account's credentials (signing and encryption as the server requires)."""

from __future__ import annotations

import contextlib
import datetime
import stat as stat_module
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ingest.errors import (
    EmptyDocument,
    FileChanged,
    OutsideShare,
    TooLarge,
    TransientError,
    Unreadable,
)
from ingest.guards import FileContent

_ATTR_DIRECTORY, _ATTR_REPARSE = 0x10, 0x400
_SECURITY, _OWNER_GROUP_DACL = 3, 0x7
_lock = threading.Lock()
_accounts: dict[tuple[str, int], tuple[str | None, str | None]] = {}


class FileLocked(TransientError):
    """Another client holds the file open without sharing reads (tried again later)."""


class ShareUnavailable(TransientError):
    """The server cannot be reached, or refuses the session or the share (an outage until
    fixed: the share's documents wait, nothing is lost)."""


@dataclass(frozen=True)
class SmbLocation:
    host: str
    port: int
    share: str
    folder: str  # below the share, "/"-separated, "" for the share itself

    @classmethod
    def parse(cls, url: str) -> SmbLocation:
        parts = urlsplit(url)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if parts.scheme != "smb" or not parts.hostname or not segments:
            raise ValueError(f"{url!r}: expected smb://HOST[:PORT]/SHARE[/FOLDER]")
        if any(s in (".", "..") for s in segments):
            raise ValueError(f"{url!r}: '.' and '..' are not allowed")
        return cls(parts.hostname, parts.port or 445, segments[0], "/".join(segments[1:]))

    @property
    def url(self) -> str:
        port = "" if self.port == 445 else f":{self.port}"
        return f"smb://{self.host}{port}/{self.share}" + (f"/{self.folder}" if self.folder else "")

    def unc(self, relpath: str = "") -> str:
        """The UNC path smbclient takes: ``\\\\host\\share\\folder\\rel``."""
        names = [n for n in (self.folder + "/" + relpath).split("/") if n]
        if any(n in (".", "..") for n in names) or any("\\" in n for n in names):
            raise OutsideShare(f"path {relpath!r} is not inside the share")
        return "\\\\" + "\\".join([self.host, self.share, *names])


@dataclass(frozen=True)
class SmbReader:
    """An SMB share's reader (``ingest.readers``), picklable: a parse process that reads with it
    opens the service account's session there."""

    location: str  # smb://HOST[:PORT]/SHARE[/FOLDER]
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def read(self, path: str, max_bytes: int) -> FileContent:
        where = SmbLocation.parse(self.location)
        if _accounts.get((where.host, where.port)) != (self.username, self.password):
            configure(where, self.username, self.password)
        return read(where, path, max_bytes)


def configure(location: SmbLocation, username: str | None, password: str | None) -> None:
    """The service account for a server (each process: the parse processes too); the session is
    opened on first use, so that a server down at start is an outage, not a crash."""
    with _lock:
        _accounts[(location.host, location.port)] = (username, password)


def session(location: SmbLocation) -> None:
    """The service account's session on the server: smbclient's pool keeps it; a connection the
    server dropped is made again here, with the account (smbclient alone would retry without)."""
    import smbclient

    key = (location.host, location.port)
    with _lock:
        username, password = _accounts.get(key, (None, None))
        try:
            smbclient.register_session(location.host, username=username, password=password,
                                       port=location.port, connection_timeout=15)  # fmt: skip
        except Exception as exc:
            raise ShareUnavailable(f"cannot log in to {location.url}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


#: NTSTATUS codes a document's error is told by
_GONE = {0xC0000034, 0xC000003A}  # OBJECT_NAME_NOT_FOUND, OBJECT_PATH_NOT_FOUND
_LOCKED = {0xC0000043, 0xC0000054}  # SHARING_VIOLATION, FILE_LOCK_CONFLICT
_DENIED = {0xC0000022}  # ACCESS_DENIED
_NO_SHARE = {0xC00000CC, 0xC0000225}  # BAD_NETWORK_NAME, NOT_FOUND (the share)


def error(exc: BaseException, what: str) -> Exception:
    """An smbprotocol (or network) error as the error a document records: gone, locked (tried
    again), denied (recorded), or the share unavailable (an outage: retried, nothing lost)."""
    status = getattr(exc, "ntstatus", None) or getattr(exc, "status", None)
    if status in _GONE:
        return FileChanged(f"{what}: the file disappeared")
    if status in _LOCKED:
        return FileLocked(f"{what}: locked by another client")
    if status in _DENIED:
        return Unreadable(f"{what}: access denied to the service account")
    if status in _NO_SHARE:
        return ShareUnavailable(f"{what}: the share does not exist on the server")
    if isinstance(exc, OSError | ConnectionError | TimeoutError | EOFError):
        return ShareUnavailable(f"{what}: {_reason(exc)}")
    if type(exc).__module__.startswith(("smbprotocol", "spnego")):
        return ShareUnavailable(f"{what}: {_reason(exc)}")  # logon failure, dropped session
    return Unreadable(f"{what}: {_reason(exc)}")


@dataclass(frozen=True)
class SmbStat:
    size: int
    mtime_ns: int
    is_dir: bool
    is_link: bool
    file_id: int


def lstat(location: SmbLocation, relpath: str) -> SmbStat | None:
    """The file now (not following a reparse point), or None when it is gone."""
    import smbclient

    session(location)
    try:
        st = smbclient.lstat(location.unc(relpath))
    except Exception as exc:
        err = error(exc, relpath)
        if isinstance(err, FileChanged):
            return None
        raise err from exc
    return _stat(st)


def _stat(st: Any) -> SmbStat:
    attributes = int(getattr(st, "st_file_attributes", 0))
    return SmbStat(
        size=int(st.st_size), mtime_ns=int(st.st_mtime_ns) // 1000 * 1000,  # as listings give it
        is_dir=bool(attributes & _ATTR_DIRECTORY) or stat_module.S_ISDIR(st.st_mode),
        is_link=bool(attributes & _ATTR_REPARSE), file_id=int(getattr(st, "st_ino", 0)),
    )  # fmt: skip


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _listed(info: Any) -> SmbStat:
    """A folder listing's entry (FileIdFullDirectoryInformation: no round trip per file); its
    times come in microseconds."""
    when = info.last_write_time
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    attributes = int(info.file_attributes)
    return SmbStat(
        size=int(info.end_of_file),
        mtime_ns=(when - _EPOCH) // datetime.timedelta(microseconds=1) * 1000,
        is_dir=bool(attributes & _ATTR_DIRECTORY), is_link=bool(attributes & _ATTR_REPARSE),
        file_id=int(info.file_id),
    )  # fmt: skip


def listdir(location: SmbLocation, relpath: str) -> list[tuple[str, SmbStat]]:
    """(name, stat) of each entry of a folder, sorted by name."""
    import smbclient

    session(location)
    try:
        entries = [(e.name, _listed(e.smb_info)) for e in smbclient.scandir(location.unc(relpath))]
    except Exception as exc:
        raise error(exc, relpath or "(share root)") from exc
    return sorted(entries)


def read(location: SmbLocation, relpath: str, max_bytes: int) -> FileContent:
    """The bytes of a file, within ``max_bytes`` (never following a reparse point)."""
    import smbclient

    st = lstat(location, relpath)
    if st is None:
        raise FileChanged("the file disappeared before it could be read")
    if st.is_link:
        raise OutsideShare("a reparse point (symbolic link or junction); not followed")
    if st.size > max_bytes:
        raise TooLarge(f"file is {st.size:,} bytes, over the limit of {max_bytes:,}")
    if st.size == 0:
        raise EmptyDocument("empty file (0 bytes)")
    try:
        with smbclient.open_file(location.unc(relpath), mode="rb", share_access="r") as fh:
            data = fh.read(max_bytes + 1)
    except Exception as exc:
        raise error(exc, relpath) from exc
    if len(data) > max_bytes:
        raise TooLarge(f"file grew past the limit of {max_bytes:,} bytes while being read")
    return FileContent(data, st.mtime_ns)


def security_descriptor(location: SmbLocation, relpath: str) -> bytes:
    """The file's self-relative security descriptor (owner, group, DACL), by SMB2 QUERY_INFO
    on a handle opened with READ_CONTROL only."""
    from smbclient._pool import get_smb_tree
    from smbprotocol.open import (
        CreateDisposition,
        CreateOptions,
        FilePipePrinterAccessMask,
        ImpersonationLevel,
        Open,
        ShareAccess,
        SMB2QueryInfoRequest,
        SMB2QueryInfoResponse,
    )

    session(location)
    try:
        tree, path = get_smb_tree(location.unc(relpath))
        handle = Open(tree, path)
        handle.create(
            ImpersonationLevel.Impersonation,
            FilePipePrinterAccessMask.READ_CONTROL | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES,
            0,
            ShareAccess.FILE_SHARE_READ
            | ShareAccess.FILE_SHARE_WRITE
            | ShareAccess.FILE_SHARE_DELETE,
            CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_OPEN_REPARSE_POINT,
        )
        try:
            request = SMB2QueryInfoRequest()
            request["info_type"] = _SECURITY
            request["file_info_class"] = 0
            request["output_buffer_length"] = 65536
            request["additional_information"] = _OWNER_GROUP_DACL
            request["file_id"] = handle.file_id
            connection = tree.session.connection
            sent = connection.send(request, sid=tree.session.session_id, tid=tree.tree_connect_id)
            response = SMB2QueryInfoResponse()
            response.unpack(connection.receive(sent)["data"].get_value())
            return bytes(response["buffer"].get_value())
        finally:
            handle.close()
    except Exception as exc:
        raise error(exc, relpath) from exc


# -- change notifications ----------------------------------------------------------------------
#: FILE_ACTION_* of MS-FSCC 2.7.1
ADDED, REMOVED, MODIFIED, RENAMED_OLD, RENAMED_NEW = 1, 2, 3, 4, 5
_STREAM_ACTIONS = {6: MODIFIED, 7: MODIFIED, 8: MODIFIED, 9: REMOVED}  # streams; removed by delete
#: what each watch asks for: names, sizes and writes; the security descriptor
CONTENT = 0x1 | 0x2 | 0x8 | 0x10 | 0x40  # FILE_NAME, DIR_NAME, SIZE, LAST_WRITE, CREATION
SECURITY = 0x100
#: NOT_SUPPORTED, INVALID_DEVICE_REQUEST, NOT_IMPLEMENTED: the server sends no notifications
_NO_NOTIFY = {0xC00000BB, 0xC0000010, 0xC0000002}


class NotifyUnsupported(Unreadable):
    """The server does not send change notifications (the share is polled instead)."""


class TreeWatch:
    """An SMB2 CHANGE_NOTIFY with WATCH_TREE on the share's folder, asking for ``completion``;
    re-armed after each answer (the server keeps what happens between two requests)."""

    def __init__(self, location: SmbLocation, completion: int) -> None:
        from smbclient._pool import get_smb_tree
        from smbprotocol.open import (
            CreateDisposition,
            CreateOptions,
            DirectoryAccessMask,
            FileAttributes,
            ImpersonationLevel,
            Open,
            ShareAccess,
        )

        session(location)
        self.completion = completion
        self._watcher: Any = None
        try:
            tree, path = get_smb_tree(location.unc(""))
            self._open = Open(tree, path)
            self._open.create(
                ImpersonationLevel.Impersonation,
                DirectoryAccessMask.FILE_LIST_DIRECTORY,
                FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
                ShareAccess.FILE_SHARE_READ
                | ShareAccess.FILE_SHARE_WRITE
                | ShareAccess.FILE_SHARE_DELETE,
                CreateDisposition.FILE_OPEN,
                CreateOptions.FILE_DIRECTORY_FILE,
            )
        except Exception as exc:
            raise error(exc, "(share root)") from exc

    def arm(self) -> None:
        """Ask for the next changes, unless a request is outstanding."""
        from smbprotocol.change_notify import ChangeNotifyFlags, FileSystemWatcher

        if self._watcher is not None:
            return
        watcher = FileSystemWatcher(self._open)
        try:
            watcher.start(self.completion, flags=ChangeNotifyFlags.SMB2_WATCH_TREE)
        except Exception as exc:
            raise error(exc, "change notification") from exc
        self._watcher = watcher

    @property
    def ready(self) -> bool:
        return self._watcher is not None and bool(self._watcher.response_event.is_set())

    def take(self) -> list[tuple[int, str]]:
        """The (action, path) pairs of the answer, paths ``/``-separated below the share's folder;
        an empty list when the server's buffer overflowed (the tree must be compared again)."""
        watcher, self._watcher = self._watcher, None
        failure = watcher._t_exc  # a failure in smbprotocol's receiving thread (result hides it)
        if failure is not None:
            status = getattr(failure, "ntstatus", None) or getattr(failure, "status", None)
            if status in _NO_NOTIFY:
                raise NotifyUnsupported(f"the server sends no change notifications ({failure})")
            raise error(failure, "change notification") from failure
        if watcher.cancelled:
            return []
        actions = []
        for info in watcher.result or []:
            action = int(info["action"].get_value())
            name = str(info["file_name"].get_value())
            if action in _STREAM_ACTIONS:  # "name:stream": the file itself changed
                action, name = _STREAM_ACTIONS[action], name.split(":", 1)[0]
            actions.append((action, name.replace("\\", "/")))
        return actions

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        with contextlib.suppress(Exception):  # the connection may be gone already
            if watcher is not None and not watcher.response_event.is_set():
                watcher.cancel()
        with contextlib.suppress(Exception):
            self._open.close()
