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


# -- SDDL: a descriptor in its text form (share_permissions in the configuration) ----------------
#: SID aliases of SDDL that name the same SID in every domain
SDDL_SIDS = {
    "WD": EVERYONE_SID, "AU": AUTHENTICATED_USERS_SID, "AN": "S-1-5-7", "BA": "S-1-5-32-544",
    "BU": "S-1-5-32-545", "BG": "S-1-5-32-546", "PU": "S-1-5-32-547", "AO": "S-1-5-32-548",
    "SO": "S-1-5-32-549", "BO": "S-1-5-32-551", "RU": "S-1-5-32-554", "SY": "S-1-5-18",
    "LS": "S-1-5-19", "NS": "S-1-5-20", "IU": "S-1-5-4", "NU": "S-1-5-2", "SU": "S-1-5-6",
    "CO": "S-1-3-0", "CG": "S-1-3-1", "OW": "S-1-3-4",
}  # fmt: skip
#: aliases relative to the domain (its SID, then this RID)
SDDL_DOMAIN_RIDS = {"LA": 500, "LG": 501, "DA": 512, "DU": 513, "DG": 514, "DC": 515,
                    "DD": 516, "CA": 517, "SA": 518, "EA": 519, "PA": 520}  # fmt: skip
SDDL_RIGHTS = {
    "GA": GENERIC_ALL, "GR": GENERIC_READ, "GW": 0x40000000, "GX": 0x20000000,
    "FA": 0x1F01FF, "FR": 0x120089, "FW": 0x120116, "FX": 0x1200A0,
    "RC": 0x20000, "SD": 0x10000, "WD": 0x40000, "WO": 0x80000,
    "CC": 0x1, "DC": 0x2, "LC": 0x4, "SW": 0x8, "RP": 0x10, "WP": 0x20, "DT": 0x40, "LO": 0x80,
    "CR": 0x100,
}  # fmt: skip
_SDDL_FLAGS = {"OI": 0x01, "CI": 0x02, "NP": 0x04, "IO": INHERIT_ONLY, "ID": INHERITED,
               "SA": 0x40, "FA": 0x80}  # fmt: skip


class BadSddl(ValueError):
    """Text that is not an SDDL security descriptor this module can evaluate."""


def parse_sddl(text: str, domain_sid: str | None = None) -> SecurityDescriptor:
    """An SDDL string (``O:BAG:SYD:(A;;0x1200a9;;;S-1-5-21-...-1104)(D;;FA;;;S-1-...)``) as a
    descriptor. Allow and deny ACEs only; domain-relative aliases (DU, DA, ...) need
    ``domain_sid``. ``D:NO_ACCESS_CONTROL``: no DACL (everyone)."""
    text = "".join(text.split())
    owner = group = None
    dacl: tuple[Ace, ...] | None = None
    seen_dacl = False
    pos = 0
    while pos < len(text):
        part, colon = text[pos], text.find(":", pos)
        if colon != pos + 1 or part not in "OGDS":
            raise BadSddl(f"SDDL: expected O:, G:, D: or S: at {text[pos : pos + 12]!r}")
        end = _next_part(text, colon + 1)
        value = text[colon + 1 : end]
        if part == "O":
            owner = _sddl_sid(value, domain_sid)
        elif part == "G":
            group = _sddl_sid(value, domain_sid)
        elif part == "D":
            seen_dacl = True
            dacl = _sddl_acl(value, domain_sid)
        pos = end  # S: (the audit list) says nothing about who may read
    if not seen_dacl:
        raise BadSddl("SDDL without a D: part (the DACL): who may read is not said")
    return SecurityDescriptor(owner, group, dacl)


def _next_part(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch in "OGDS" and text[i + 1 : i + 2] == ":" and i > start:
            return i
    return len(text)


def _sddl_acl(value: str, domain_sid: str | None) -> tuple[Ace, ...] | None:
    flags, _, rest = value.partition("(")
    if "NO_ACCESS_CONTROL" in flags:
        return None
    if flags.replace("AI", "").replace("AR", "").replace("P", ""):
        raise BadSddl(f"SDDL: unknown DACL flags {flags!r}")
    aces = []
    for body in ("(" + rest).split(")") if rest else ():
        if not body:
            continue
        if not body.startswith("("):
            raise BadSddl(f"SDDL: {body!r} is not an ACE in parentheses")
        aces.append(_sddl_ace(body[1:], domain_sid))
    return tuple(aces)


def _sddl_ace(body: str, domain_sid: str | None) -> Ace:
    fields = body.split(";")
    if len(fields) != 6:
        raise BadSddl(f"SDDL: ACE ({body}) needs six fields: type;flags;rights;;;sid")
    kind, flags, rights, obj, inherit_obj, sid = fields
    if kind not in ("A", "D") or obj or inherit_obj:
        raise BadSddl(f"SDDL: ACE ({body}): only allow (A) and deny (D) ACEs without object types")
    flag_bits = 0
    for i in range(0, len(flags), 2):
        if flags[i : i + 2] not in _SDDL_FLAGS:
            raise BadSddl(f"SDDL: ACE ({body}): unknown flag {flags[i : i + 2]!r}")
        flag_bits |= _SDDL_FLAGS[flags[i : i + 2]]
    ace_type = ACCESS_ALLOWED if kind == "A" else ACCESS_DENIED
    return Ace(ace_type, flag_bits, _sddl_rights(rights, body), _sddl_sid(sid, domain_sid))


def _sddl_rights(rights: str, body: str) -> int:
    if rights[:2].lower() == "0x" or rights.isdigit():
        try:
            return int(rights, 0)
        except ValueError:
            raise BadSddl(f"SDDL: ACE ({body}): rights {rights!r} are not a number") from None
    mask = 0
    for i in range(0, len(rights), 2):
        code = rights[i : i + 2]
        if code not in SDDL_RIGHTS:
            raise BadSddl(f"SDDL: ACE ({body}): unknown right {code!r}")
        mask |= SDDL_RIGHTS[code]
    return mask


def _sddl_sid(value: str, domain_sid: str | None) -> str:
    if value.upper().startswith("S-1-"):
        try:
            sid_bytes(value.upper())
        except ValueError:
            raise BadSddl(f"SDDL: {value!r} is not a SID") from None
        return value.upper()
    if value in SDDL_SIDS:
        return SDDL_SIDS[value]
    if value in SDDL_DOMAIN_RIDS:
        if domain_sid is None:
            raise BadSddl(f"SDDL: {value!r} names a group of the domain: write its SID "
                          f"(S-1-5-21-...-{SDDL_DOMAIN_RIDS[value]})")  # fmt: skip
        return f"{domain_sid}-{SDDL_DOMAIN_RIDS[value]}"
    raise BadSddl(
        f"SDDL: unknown account {value!r} (a SID S-1-..., or an alias such as WD, AU, BA)"
    )
