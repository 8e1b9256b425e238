"""Mail and archive files for the tests, built here from their specifications.

No library writes Outlook .msg files, so ``outlook_msg`` writes one: a Compound File Binary
(MS-CFB, version 3, 512-byte sectors, a mini stream for streams under 4096 bytes) holding the
property streams of MS-OXMSG. It is read back by the same olefile/oxmsg code that reads real
Outlook files. ``eml`` and ``zip_of`` use the standard library.
"""

from __future__ import annotations

import email
import email.policy
import io
import math
import struct
import zipfile
from email.message import EmailMessage

_END, _FREE, _FAT, _NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
_SECTOR, _MINI, _CUTOFF = 512, 64, 4096

PT_LONG, PT_SYSTIME, PT_UNICODE, PT_BINARY = 0x0003, 0x0040, 0x001F, 0x0102


def cfb(streams: dict[str, bytes]) -> bytes:
    """A compound file with these streams (``storage/stream`` paths make the storages)."""
    # the tree: root (0), then one entry per storage and stream
    entries: list[dict] = [{"name": "Root Entry", "type": 5, "kids": [], "data": b""}]  # type: ignore[type-arg]
    index: dict[str, int] = {"": 0}
    for path in sorted(streams):
        parent = ""
        for depth, part in enumerate(path.split("/")):
            here = f"{parent}/{part}" if parent else part
            if here not in index:
                last = depth == len(path.split("/")) - 1
                index[here] = len(entries)
                entries.append({"name": part, "type": 2 if last else 1, "kids": [],
                                "data": streams[path] if last else b""})  # fmt: skip
                entries[index[parent]]["kids"].append(index[here])
            parent = here
    # stream contents: small ones in the mini stream, the rest in sectors of their own
    mini = bytearray()
    minifat: list[int] = []
    big: list[tuple[int, bytes]] = []
    for number, entry in enumerate(entries):
        data = entry["data"]
        if entry["type"] != 2:
            continue
        if len(data) < _CUTOFF:
            entry["start"] = len(minifat) if data else _END
            count = math.ceil(len(data) / _MINI)
            minifat += [len(minifat) + i + 1 for i in range(count - 1)] + ([_END] if count else [])
            mini += data + b"\0" * (count * _MINI - len(data))
        else:
            big.append((number, data))
    directory = _sectors_for(len(entries) * 128)
    minifat_sectors = _sectors_for(len(minifat) * 4)
    mini_sectors = _sectors_for(len(mini))
    big_sectors = [_sectors_for(len(d)) for _, d in big]
    others = directory + minifat_sectors + mini_sectors + sum(big_sectors)
    fat_sectors = 1
    while fat_sectors * 128 < others + fat_sectors:
        fat_sectors += 1
    fat: list[int] = []
    body = bytearray()

    def chain(count: int, data: bytes) -> int:
        start = len(fat)
        fat.extend(start + i + 1 for i in range(count - 1))
        fat.append(_END)
        body.extend(data + b"\0" * (count * _SECTOR - len(data)))
        return start

    dir_start = len(fat)
    fat.extend([0] * directory)  # filled below, once the directory is written
    body.extend(b"\0" * directory * _SECTOR)
    minifat_start = (
        chain(minifat_sectors, b"".join(struct.pack("<I", n) for n in minifat)) if minifat else _END
    )
    entries[0]["start"] = chain(mini_sectors, bytes(mini)) if mini else _END
    entries[0]["size"] = len(mini)
    for (number, data), count in zip(big, big_sectors, strict=True):
        entries[number]["start"] = chain(count, data)
    fat_start = len(fat)
    fat.extend([_FAT] * fat_sectors)
    for i in range(directory):
        fat[dir_start + i] = dir_start + i + 1 if i < directory - 1 else _END
    table = bytearray()
    for entry in entries:
        table += _dir_entry(entry, entries)
    while len(table) % _SECTOR:
        table += _empty_entry()
    body[dir_start * _SECTOR : (dir_start + directory) * _SECTOR] = table
    fat += [_FREE] * (fat_sectors * 128 - len(fat))
    body += b"".join(struct.pack("<I", n) for n in fat)
    difat = [fat_start + i for i in range(fat_sectors)] + [_FREE] * (109 - fat_sectors)
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII", bytes.fromhex("D0CF11E0A1B11AE1"), b"\0" * 16, 0x3E, 3,
        0xFFFE, 9, 6, b"\0" * 6, 0, fat_sectors, dir_start, 0, _CUTOFF, minifat_start,
        minifat_sectors if minifat else 0, _END, 0,
    )  # fmt: skip
    header += b"".join(struct.pack("<I", n) for n in difat)
    return header + bytes(body)


def _sectors_for(size: int) -> int:
    return math.ceil(size / _SECTOR)


def _sort_key(name: str) -> tuple[int, str]:
    return len(name), name.upper()


def _dir_entry(entry: dict, entries: list[dict]) -> bytes:  # type: ignore[type-arg]
    name = entry["name"].encode("utf-16-le") + b"\0\0"
    kids = sorted(entry["kids"], key=lambda k: _sort_key(entries[k]["name"]))
    for a, b in zip(kids, kids[1:], strict=False):  # siblings as a right-leaning chain
        entries[a]["right"] = b
    size = entry.get("size", len(entry["data"]))
    return struct.pack(
        "<64sHBBIII16sIQQIQ", name.ljust(64, b"\0"), len(name), entry["type"], 1,
        _NOSTREAM, entry.get("right", _NOSTREAM), kids[0] if kids else _NOSTREAM, b"\0" * 16,
        0, 0, 0, entry.get("start", _END if not size else 0), size,
    )  # fmt: skip


def _empty_entry() -> bytes:
    return struct.pack(
        "<64sHBBIII16sIQQIQ", b"", 0, 0, 0, _NOSTREAM, _NOSTREAM, _NOSTREAM, b"\0" * 16,
        0, 0, 0, 0, 0,
    )  # fmt: skip


def _properties(props: dict[tuple[int, int], object], header: bytes) -> dict[str, bytes]:
    """The property stream and the value streams of one MS-OXMSG object."""
    table = bytearray(header)
    streams: dict[str, bytes] = {}
    for (pid, ptype), value in props.items():
        tag = (pid << 16) | ptype
        if ptype in (PT_UNICODE, PT_BINARY):
            data = str(value).encode("utf-16-le") if ptype == PT_UNICODE else value
            assert isinstance(data, bytes)
            streams[f"__substg1.0_{tag:08X}"] = data  # the size counts the terminator
            table += struct.pack("<IIII", tag, 6, len(data) + (2 if ptype == PT_UNICODE else 0), 0)
        else:
            table += struct.pack("<IIQ", tag, 6, int(value))  # type: ignore[call-overload]
    streams["__properties_version1.0"] = bytes(table)
    return streams


def outlook_msg(
    subject: str, body: str, attachments: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
    *, sender: str = "Alice Example <alice@example.com>", to: str = "bob@example.com",
    message_class: str = "IPM.Note",
) -> bytes:  # fmt: skip
    """An Outlook .msg: subject, body, sender and recipients, attachments by value."""
    headers = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n"
    props: dict[tuple[int, int], object] = {
        (0x001A, PT_UNICODE): message_class,
        (0x0037, PT_UNICODE): subject,
        (0x1000, PT_UNICODE): body,
        (0x0E04, PT_UNICODE): to,
        (0x007D, PT_UNICODE): headers,
        (0x0039, PT_SYSTIME): 133_000_000_000_000_000,  # a FILETIME in 2022
    }
    n = len(attachments)
    top = struct.pack("<8xIIII8x", 0, n, 0, n)
    streams = _properties(props, top)
    for i, (name, data) in enumerate(attachments):
        attach = _properties(
            {(0x3705, PT_LONG): 1, (0x3707, PT_UNICODE): name, (0x3704, PT_UNICODE): name,
             (0x3701, PT_BINARY): data, (0x370E, PT_UNICODE): "application/octet-stream"},
            b"\0" * 8,
        )  # fmt: skip
        for stream, value in attach.items():
            streams[f"__attach_version1.0_#{i:08X}/{stream}"] = value
    return cfb(streams)


def eml(
    subject: str, body: str, attachments: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
) -> bytes:  # fmt: skip
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Alice Example <alice@example.com>"
    message["To"] = "bob@example.com"
    message["Date"] = "Tue, 01 Oct 2024 09:30:00 +0900"
    message.set_content(body)
    for name, data in attachments:
        if name.endswith(".eml"):  # an attached message: message/rfc822
            inner = email.message_from_bytes(data, policy=email.policy.default)
            message.add_attachment(inner, filename=name)
        else:
            message.add_attachment(data, maintype="application", subtype="octet-stream",
                                   filename=name)  # fmt: skip
    return bytes(message)


def zip_of(members: dict[str, bytes], *, encrypt: frozenset[str] = frozenset()) -> bytes:
    """A zip with these members; those in ``encrypt`` carry the encrypted flag (their bytes are
    not encrypted: a reader must refuse them by the flag alone)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 10, 1, 9, 30, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    data = bytearray(out.getvalue())
    for name in encrypt:  # set bit 0 of the flags in the local and the central header
        encoded = name.encode()
        for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = data.find(signature)
            while at >= 0:
                name_at = at + (30 if signature == b"PK\x03\x04" else 46)
                if data[name_at : name_at + len(encoded)] == encoded:
                    data[at + flag_at] |= 1
                at = data.find(signature, at + 4)
    return bytes(data)
