"""A share's own permissions (the "Share Permissions" tab of Windows), read from the file server:
SRVSVC ``NetrShareGetInfo`` at level 502 (MS-SRVS 3.1.4.10), one DCE/RPC call over the
``\\PIPE\\srvsvc`` named pipe of the server's IPC$ share, on the service account's SMB session.

The call is small enough to encode here (MS-RPCE bind and request PDUs, NDR 2.0 little-endian):
a bind to the SRVSVC interface, one request, and the answer's SHARE_INFO_502_I, of which only
the security descriptor is kept. Windows answers level 502 to members of Administrators, Server
Operators or Power Users only: any other account gets ``ShareSecurityDenied``.
"""

from __future__ import annotations

import contextlib
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from ingest import smbfs
from ingest.errors import FileChanged, TransientError, Unreadable

_SRVSVC = uuid.UUID("4b324fc8-1670-01d3-1278-5a47bf6ee188")  # version 3.0
_NDR = uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860")  # version 2
_BIND, _BIND_ACK, _BIND_NAK, _REQUEST, _RESPONSE, _FAULT = 11, 12, 13, 0, 2, 3
_FIRST, _LAST = 0x01, 0x02
_NET_SHARE_GET_INFO = 16
_MAX_FRAGMENT = 4280
#: how long the server may take to answer one request on the pipe
TIMEOUT_S = 30.0
_ERROR_ACCESS_DENIED = 5
_NERR_NET_NAME_NOT_FOUND = 2310
_ERROR_INVALID_NAME = 123
_STATUS_ACCESS_DENIED = 0xC0000022


class ShareSecurityDenied(Unreadable):
    """The server does not give this account the share's permissions (Windows: only to
    Administrators, Server Operators and Power Users of the file server)."""


class RpcError(Unreadable):
    """The server answered the call with a fault or something that is not its answer."""


@dataclass(frozen=True)
class ShareInfo:
    name: str
    path: str
    #: the share's self-relative security descriptor; None: the share has none (everyone)
    descriptor: bytes | None


def share_info(location: smbfs.SmbLocation) -> ShareInfo:
    """The share's level-502 information; ShareSecurityDenied when the account may not read it,
    ShareUnavailable when the server cannot be reached."""
    stub = _call(location, _NET_SHARE_GET_INFO, _get_info_request(location.host, location.share))
    return _get_info_response(stub, location)


def _call(location: smbfs.SmbLocation, opnum: int, stub: bytes) -> bytes:
    from smbclient._pool import get_smb_tree
    from smbprotocol.open import (
        CreateDisposition,
        CreateOptions,
        FilePipePrinterAccessMask,
        ImpersonationLevel,
        Open,
        ShareAccess,
    )

    smbfs.session(location)
    try:
        tree, _ = get_smb_tree(f"\\\\{location.host}\\IPC$", port=location.port)
        pipe = Open(tree, "srvsvc")
        pipe.create(
            ImpersonationLevel.Impersonation,
            FilePipePrinterAccessMask.FILE_READ_DATA | FilePipePrinterAccessMask.FILE_WRITE_DATA,
            0,
            ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
            CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_NON_DIRECTORY_FILE,
        )
    except Exception as exc:
        err = smbfs.error(exc, "the server's srvsvc pipe")
        if (
            getattr(exc, "ntstatus", None) or getattr(exc, "status", None)
        ) == _STATUS_ACCESS_DENIED:
            raise ShareSecurityDenied(f"{location.host} refuses this account its IPC$ share or "
                                      "srvsvc pipe (access denied)") from exc  # fmt: skip
        if isinstance(err, FileChanged):
            raise RpcError(f"{location.host} has no srvsvc pipe") from exc
        raise err from exc
    silent = False
    try:
        _exchange(pipe, _bind_pdu(), _BIND_ACK)
        body = struct.pack("<IHH", len(stub), 0, opnum) + stub
        return _exchange(pipe, _pdu(_REQUEST, 2, body), _RESPONSE)[8:]
    except (RpcError, TransientError) as exc:
        silent = isinstance(exc, smbfs.ShareUnavailable)  # no answer: a close would wait too
        raise
    except Exception as exc:
        raise smbfs.error(exc, "NetrShareGetInfo") from exc
    finally:
        if not silent:
            with contextlib.suppress(Exception):  # the connection went away: nothing to close
                pipe.close()


def _exchange(pipe: Any, pdu: bytes, expected: int) -> bytes:
    """Send one PDU and read the answer (FSCTL_PIPE_TRANSCEIVE: written and read in one
    request, as Windows' clients do), joining its fragments; the body after the header. A server
    that does not answer within ``TIMEOUT_S`` is an outage (ShareUnavailable), not a refusal."""
    from smbprotocol.ioctl import CtlCode, IOCTLFlags, SMB2IOCTLRequest, SMB2IOCTLResponse
    from smbprotocol.open import SMB2ReadRequest, SMB2ReadResponse

    request: Any = SMB2IOCTLRequest()
    request["ctl_code"] = CtlCode.FSCTL_PIPE_TRANSCEIVE
    request["file_id"] = pipe.file_id
    request["max_output_response"] = _MAX_FRAGMENT
    request["flags"] = IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL
    request["buffer"] = pdu
    answer: Any = SMB2IOCTLResponse()
    body = b""
    while True:
        answer.unpack(_send(pipe, request))
        data = bytes(answer["buffer"].get_value())
        if len(data) < 16:
            raise RpcError("a truncated DCE/RPC answer")
        ptype, flags, frag_len = data[2], data[3], struct.unpack_from("<H", data, 8)[0]
        if ptype == _FAULT:
            status = struct.unpack_from("<I", data, 24)[0] if len(data) >= 28 else 0
            raise RpcError(f"the server refused the call (DCE/RPC fault 0x{status:08x})")
        if ptype == _BIND_NAK:
            raise RpcError("the server does not serve SRVSVC on this pipe (bind refused)")
        if ptype != expected:
            raise RpcError(f"an unexpected DCE/RPC answer (type {ptype})")
        if expected != _RESPONSE:
            return data[16:frag_len]
        chunk = data[16:frag_len]
        body += chunk if not body else chunk[8:]  # each fragment has its own stub header
        if flags & _LAST:
            return body
        request = SMB2ReadRequest()  # the next fragment: a plain read of the pipe
        request["length"] = _MAX_FRAGMENT
        request["offset"] = 0
        request["file_id"] = pipe.file_id
        answer = SMB2ReadResponse()


def _send(pipe: Any, request: Any) -> bytes:
    from smbprotocol.exceptions import SMBException

    tree = pipe.tree_connect
    connection = tree.session.connection
    sent = connection.send(request, sid=tree.session.session_id, tid=tree.tree_connect_id)
    try:
        return bytes(connection.receive(sent, timeout=TIMEOUT_S)["data"].get_value())
    except SMBException as exc:
        if sent.response_event.is_set():
            raise  # an answer, an error status: told by the caller
        raise smbfs.ShareUnavailable(
            f"the server's srvsvc pipe did not answer within {TIMEOUT_S:g} s"
        ) from exc


def _pdu(ptype: int, call_id: int, body: bytes) -> bytes:
    header = struct.pack("<BBBB4sHHI", 5, 0, ptype, _FIRST | _LAST, b"\x10\x00\x00\x00",
                         16 + len(body), 0, call_id)  # fmt: skip
    return header + body


def _bind_pdu() -> bytes:
    body = struct.pack("<HHI", _MAX_FRAGMENT, _MAX_FRAGMENT, 0)
    body += struct.pack("<BBH", 1, 0, 0)  # one presentation context
    body += struct.pack("<HBB", 0, 1, 0)  # context 0, one transfer syntax
    body += _SRVSVC.bytes_le + struct.pack("<HH", 3, 0)
    body += _NDR.bytes_le + struct.pack("<I", 2)
    return _pdu(_BIND, 1, body)


# -- NDR -----------------------------------------------------------------------------------------
def _wstring(text: str) -> bytes:
    """A conformant varying string of UTF-16 with its terminator, padded to 4 bytes."""
    chars = text.encode("utf-16-le") + b"\x00\x00"
    count = len(chars) // 2
    out = struct.pack("<III", count, 0, count) + chars
    return out + b"\x00" * (-len(out) % 4)


def _get_info_request(host: str, share: str) -> bytes:
    # [in, string, unique] ServerName; [in, string] NetName; [in] Level
    return struct.pack("<I", 0x20000) + _wstring(f"\\\\{host}") + _wstring(share) + \
        struct.pack("<I", 502)  # fmt: skip


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def u32(self) -> int:
        self.align()
        if self.at + 4 > len(self.data):
            raise RpcError("a truncated NetrShareGetInfo answer")
        (value,) = struct.unpack_from("<I", self.data, self.at)
        self.at += 4
        return int(value)

    def align(self) -> None:
        self.at += -self.at % 4

    def wstring(self) -> str:
        _, _, count = self.u32(), self.u32(), self.u32()
        raw = self.bytes(2 * count)
        return raw.decode("utf-16-le", "replace").rstrip("\x00")

    def bytes(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise RpcError("a truncated NetrShareGetInfo answer")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out


def _get_info_response(stub: bytes, location: smbfs.SmbLocation) -> ShareInfo:
    status = struct.unpack_from("<I", stub, len(stub) - 4)[0] if len(stub) >= 4 else None
    if status == _ERROR_ACCESS_DENIED:
        raise ShareSecurityDenied(
            f"{location.host} does not give this account the permissions of share "
            f"{location.share!r} (NetrShareGetInfo level 502: access denied)"
        )
    if status in (_NERR_NET_NAME_NOT_FOUND, _ERROR_INVALID_NAME):  # Windows, Samba
        raise smbfs.ShareUnavailable(f"{location.url}: the share does not exist on the server")
    if status != 0:
        raise RpcError(f"NetrShareGetInfo of {location.share!r} failed (error {status})")
    r = _Reader(stub[:-4])
    level, referent = r.u32(), r.u32()
    if level != 502 or not referent:
        raise RpcError(f"NetrShareGetInfo answered level {level}, not 502")
    # SHARE_INFO_502_I: netname*, type, remark*, permissions, max_uses, current_uses, path*,
    # passwd*, reserved (the descriptor's length), security_descriptor*
    fields = [r.u32() for _ in range(10)]
    netname = r.wstring() if fields[0] else ""
    if fields[2]:
        r.wstring()  # remark
    path = r.wstring() if fields[6] else ""
    if fields[7]:
        r.wstring()  # password (share-level security only)
    descriptor = None
    if fields[9]:
        size = r.u32()
        descriptor = r.bytes(size)
    return ShareInfo(netname, path, descriptor or None)
