"""Windows permissions: a file's security descriptor (MS-DTYP 2.4.6, self-relative) read as
Windows reads it, and turned into the ACL tokens of the index (``sid:S-1-...``).

Read access is decided by the DACL's ACEs in the order they are stored: the first ACE whose SID
the user holds and whose mask carries a read right (FILE_READ_DATA, GENERIC_READ, GENERIC_ALL)
decides, allow or deny. ACEs that only pass to children (INHERIT_ONLY) do not apply to the file;
inherited ACEs are on the file already (the server reports them). No DACL, or a NULL one:
everyone; an empty DACL: nobody. Object-type and callback ACEs (conditional access) cannot be
evaluated here: they are skipped with a warning, which can only take access away from an allow
that follows them, never give it (a deny of that kind is kept as a deny).

The index stores a set of allowed tokens and a set of denied ones (a principal reads when one of
its tokens is allowed and none is denied). That is exactly Windows' verdict for every DACL in the
order Windows tools write (explicit denies, explicit allows, inherited denies, inherited allows)
except one shape: a deny that stands between two allows, which a user holding both the deny's
SID and the earlier allow's would pass. Such a deny is still stored as a deny: the index may
refuse what Windows grants, never the other way round.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

EVERYONE_SID = "S-1-1-0"
AUTHENTICATED_USERS_SID = "S-1-5-11"

SE_DACL_PRESENT = 0x0004
ACCESS_ALLOWED, ACCESS_DENIED = 0x00, 0x01
_SKIPPED_TYPES = {
    0x05: "allowed object", 0x06: "denied object", 0x09: "allowed callback",
    0x0A: "denied callback", 0x0B: "allowed callback object", 0x0C: "denied callback object",
}  # fmt: skip
_DENY_LIKE = {0x06, 0x0A, 0x0C}
INHERIT_ONLY, INHERITED = 0x08, 0x10
FILE_READ_DATA, GENERIC_ALL, GENERIC_READ = 0x1, 0x10000000, 0x80000000
READ_RIGHTS = FILE_READ_DATA | GENERIC_ALL | GENERIC_READ


class BadDescriptor(ValueError):
    """The bytes are not a self-relative security descriptor."""


@dataclass(frozen=True)
class Ace:
    type: int
    flags: int
    mask: int
    sid: str

    @property
    def allow(self) -> bool:
        return self.type == ACCESS_ALLOWED

    @property
    def reads(self) -> bool:
        return bool(self.mask & READ_RIGHTS)

    @property
    def applies(self) -> bool:
        """On the file itself (an inherit-only ACE is only passed on to children)."""
        return not self.flags & INHERIT_ONLY

    @property
    def inherited(self) -> bool:
        return bool(self.flags & INHERITED)


@dataclass(frozen=True)
class SecurityDescriptor:
    owner: str | None
    group: str | None
    #: None: no DACL, or a NULL DACL (everyone may do anything); []: an empty DACL (nobody)
    dacl: tuple[Ace, ...] | None
    #: ACE types that could not be evaluated (object, callback): skipped, reported
    skipped: tuple[str, ...] = field(default=())


def parse_sid(data: bytes, offset: int = 0) -> tuple[str, int]:
    """A binary SID at ``offset``: its string form and its length."""
    if len(data) < offset + 8:
        raise BadDescriptor("a SID past the end of the descriptor")
    revision, count = data[offset], data[offset + 1]
    authority = int.from_bytes(data[offset + 2 : offset + 8], "big")
    end = offset + 8 + 4 * count
    if revision != 1 or count > 15 or len(data) < end:
        raise BadDescriptor(f"not a SID (revision {revision}, {count} sub-authorities)")
    subs = struct.unpack_from(f"<{count}I", data, offset + 8)
    return "S-1-" + "-".join(str(x) for x in (authority, *subs)), end - offset


def sid_bytes(sid: str) -> bytes:
    """The binary form of ``S-1-...`` (for building descriptors in tests and tools)."""
    parts = sid.split("-")
    if len(parts) < 3 or parts[0] != "S" or parts[1] != "1":
        raise ValueError(f"not a SID: {sid!r}")
    authority, subs = int(parts[2]), [int(p) for p in parts[3:]]
    return (
        bytes([1, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)
    )


def parse_descriptor(data: bytes) -> SecurityDescriptor:
    """A self-relative security descriptor (what SMB2 QUERY_INFO returns)."""
    if len(data) < 20:
        raise BadDescriptor("too short for a security descriptor")
    revision, _, control, o_owner, o_group, _, o_dacl = struct.unpack_from("<BBHIIII", data)
    if revision != 1:
        raise BadDescriptor(f"security descriptor revision {revision}")
    owner = parse_sid(data, o_owner)[0] if o_owner else None
    group = parse_sid(data, o_group)[0] if o_group else None
    if not control & SE_DACL_PRESENT or not o_dacl:
        return SecurityDescriptor(owner, group, None)
    aces, skipped = _parse_acl(data, o_dacl)
    return SecurityDescriptor(owner, group, aces, skipped)


def _parse_acl(data: bytes, offset: int) -> tuple[tuple[Ace, ...], tuple[str, ...]]:
    if len(data) < offset + 8:
        raise BadDescriptor("an ACL past the end of the descriptor")
    revision, _, size, count, _ = struct.unpack_from("<BBHHH", data, offset)
    if revision not in (2, 3, 4) or len(data) < offset + size:  # Samba writes 3
        raise BadDescriptor(f"not an ACL (revision {revision}, size {size})")
    aces, skipped = [], []
    pos = offset + 8
    for _ in range(count):
        ace_type, flags, ace_size = struct.unpack_from("<BBH", data, pos)
        if ace_size < 8 or pos + ace_size > offset + size:
            raise BadDescriptor("an ACE past the end of its ACL")
        if ace_type in (ACCESS_ALLOWED, ACCESS_DENIED):
            (mask,) = struct.unpack_from("<I", data, pos + 4)
            aces.append(Ace(ace_type, flags, mask, parse_sid(data, pos + 8)[0]))
        elif ace_type in _SKIPPED_TYPES:
            skipped.append(_SKIPPED_TYPES[ace_type])
            if ace_type in _DENY_LIKE:  # cannot tell when it applies: assume it does
                (mask,) = struct.unpack_from("<I", data, pos + 4)
                sid = _object_ace_sid(data, pos, ace_type)
                if sid:
                    aces.append(Ace(ACCESS_DENIED, flags, mask, sid))
        pos += ace_size
    return tuple(aces), tuple(skipped)


def _object_ace_sid(data: bytes, pos: int, ace_type: int) -> str | None:
    try:
        if ace_type in (0x06, 0x0C):  # object ACE: flags, then up to two GUIDs, then the SID
            (obj_flags,) = struct.unpack_from("<I", data, pos + 8)
            at = pos + 12 + (16 if obj_flags & 1 else 0) + (16 if obj_flags & 2 else 0)
            return parse_sid(data, at)[0]
        return parse_sid(data, pos + 8)[0]
    except (BadDescriptor, struct.error):
        return None


@dataclass(frozen=True)
class ReadAccess:
    """Who may read, as the index stores it: SIDs allowed and SIDs denied (no ``sid:``)."""

    allow: frozenset[str]
    deny: frozenset[str]


def read_access(sd: SecurityDescriptor) -> ReadAccess:
    """The SIDs that read access is granted to and denied to (see the module's docstring)."""
    if sd.skipped:
        log.warning("security descriptor with ACEs that cannot be evaluated (%s): skipped",
                    ", ".join(sorted(set(sd.skipped))))  # fmt: skip
    if sd.dacl is None:
        return ReadAccess(frozenset({EVERYONE_SID}), frozenset())
    effective = [a for a in sd.dacl if a.applies and a.reads]
    last_allow = max((i for i, a in enumerate(effective) if a.allow), default=-1)
    allow = frozenset(a.sid for a in effective if a.allow)
    # a deny after the last allow decides only for users no allow reaches: denied anyway
    deny = frozenset(a.sid for a in effective[:last_allow] if not a.allow)
    return ReadAccess(allow - deny, deny)


def windows_reads(sd: SecurityDescriptor, token: set[str]) -> bool:
    """Windows' own verdict for one user's SIDs: the first applying ACE that names one of them
    with a read right decides (the reference the index's encoding is tested against)."""
    if sd.dacl is None:
        return True
    for ace in sd.dacl:
        if ace.applies and ace.reads and ace.sid in token:
            return ace.allow
    return False


def build_descriptor(aces: list[Ace] | None, owner: str = "S-1-5-32-544") -> bytes:
    """A self-relative descriptor with these ACEs (None: no DACL); for tests and tools."""
    owner_b = sid_bytes(owner)
    header = 20
    if aces is None:
        return struct.pack("<BBHIIII", 1, 0, 0x8000, header, 0, 0, 0) + owner_b
    body = b"".join(_ace_bytes(a) for a in aces)
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(body), len(aces), 0) + body
    o_dacl = header + len(owner_b)
    control = 0x8000 | SE_DACL_PRESENT
    return struct.pack("<BBHIIII", 1, 0, control, header, 0, 0, o_dacl) + owner_b + acl


def _ace_bytes(ace: Ace) -> bytes:
    sid = sid_bytes(ace.sid)
    return struct.pack("<BBHI", ace.type, ace.flags, 8 + len(sid), ace.mask) + sid
