"""Windows security descriptors: parsed by MS-DTYP, and the index's allow/deny encoding against
Windows' own first-matching-ACE verdict, for random DACLs and users."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.permissions.ntfs import (
    ACCESS_ALLOWED,
    ACCESS_DENIED,
    EVERYONE_SID,
    FILE_READ_DATA,
    GENERIC_ALL,
    GENERIC_READ,
    INHERIT_ONLY,
    INHERITED,
    Ace,
    BadDescriptor,
    build_descriptor,
    parse_descriptor,
    parse_sid,
    read_access,
    sid_bytes,
    windows_reads,
)

SIDS = [EVERYONE_SID, "S-1-5-11", "S-1-5-21-1-2-3-1101", "S-1-5-21-1-2-3-1102",
        "S-1-5-21-1-2-3-1103", "S-1-5-21-1-2-3-513", "S-1-5-32-545"]  # fmt: skip
WRITE_DATA = 0x2


def _index_reads(allow: frozenset[str], deny: frozenset[str], token: set[str]) -> bool:
    """What the index's filter decides: a token allowed and none denied."""
    return bool(token & allow) and not token & deny


def test_sids_round_trip() -> None:
    for sid in [*SIDS, "S-1-5-21-3623811015-3361044348-30300820-1013"]:
        assert parse_sid(sid_bytes(sid))[0] == sid


def test_null_empty_and_inherit_only() -> None:
    assert read_access(parse_descriptor(build_descriptor(None))).allow == {EVERYONE_SID}
    nobody = read_access(parse_descriptor(build_descriptor([])))
    assert (nobody.allow, nobody.deny) == (frozenset(), frozenset())
    children_only = Ace(ACCESS_ALLOWED, INHERIT_ONLY | 0x3, FILE_READ_DATA, SIDS[2])
    assert read_access(parse_descriptor(build_descriptor([children_only]))).allow == frozenset()


def test_generic_rights_count_as_read_and_write_only_does_not() -> None:
    aces = [Ace(ACCESS_ALLOWED, 0, GENERIC_READ, SIDS[2]), Ace(ACCESS_ALLOWED, 0, GENERIC_ALL, SIDS[3]),
            Ace(ACCESS_ALLOWED, 0, WRITE_DATA, SIDS[4])]  # fmt: skip
    assert read_access(parse_descriptor(build_descriptor(aces))).allow == {SIDS[2], SIDS[3]}


def test_an_object_or_callback_ace_is_skipped_but_a_deny_of_that_kind_still_denies() -> None:
    base = build_descriptor([Ace(ACCESS_ALLOWED, 0, FILE_READ_DATA, SIDS[2])])
    callback = struct.pack(
        "<BBHI", 0x0A, 0, 8 + len(sid_bytes(SIDS[2])), FILE_READ_DATA
    ) + sid_bytes(SIDS[2])
    acl_offset = struct.unpack_from("<I", base, 16)[0]
    rev, sbz, size, count, sbz2 = struct.unpack_from("<BBHHH", base, acl_offset)
    acl = struct.pack("<BBHHH", rev, sbz, size + len(callback), count + 1, sbz2)
    data = base[:acl_offset] + acl + callback + base[acl_offset + 8 :]
    sd = parse_descriptor(data)
    assert sd.skipped == ("denied callback",)
    assert not _index_reads(*_sets(sd), {SIDS[2]})


def _sets(sd: object) -> tuple[frozenset[str], frozenset[str]]:
    access = read_access(sd)  # type: ignore[arg-type]
    return access.allow, access.deny


def test_garbage_is_a_clear_error() -> None:
    for bad in (b"", b"\x02" + b"\x00" * 30, build_descriptor([])[:25]):
        with pytest.raises(BadDescriptor):
            parse_descriptor(bad)


_aces = st.lists(
    st.builds(
        Ace,
        type=st.sampled_from([ACCESS_ALLOWED, ACCESS_DENIED]),
        flags=st.sampled_from([0, INHERITED, INHERIT_ONLY, 0x3]),
        mask=st.sampled_from([FILE_READ_DATA, GENERIC_READ, GENERIC_ALL, WRITE_DATA]),
        sid=st.sampled_from(SIDS),
    ),
    max_size=8,
)
_tokens = st.sets(st.sampled_from(SIDS), max_size=4)


@settings(max_examples=400)
@given(_aces, _tokens)
def test_the_index_never_grants_what_windows_refuses(aces: list[Ace], token: set[str]) -> None:
    sd = parse_descriptor(build_descriptor(aces))
    assert list(sd.dacl or ()) == aces
    if _index_reads(*_sets(sd), token):
        assert windows_reads(sd, token)


@settings(max_examples=400)
@given(_aces, _tokens)
def test_in_canonical_order_the_index_decides_as_windows(aces: list[Ace], token: set[str]) -> None:
    """Denies before allows within explicit and within inherited ACEs (as Windows writes a
    DACL): the index's verdict is Windows' verdict, for every user."""

    def rank(a: Ace) -> int:
        return (2 if a.inherited else 0) + (0 if a.type == ACCESS_DENIED else 1)

    canonical = sorted(aces, key=rank)
    effective = [a for a in canonical if a.applies and a.reads]
    allows = [i for i, a in enumerate(effective) if a.allow]
    sandwiched = any(not a.allow and allows and allows[0] < i < allows[-1]
                     for i, a in enumerate(effective))  # fmt: skip
    sd = parse_descriptor(build_descriptor(canonical))
    if not sandwiched:
        assert _index_reads(*_sets(sd), token) == windows_reads(sd, token)
