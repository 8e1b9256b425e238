"""The ACL model: POSIX classes to tokens, traversal, rules, and a property test against the
exact POSIX access check."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.permissions.posix import (
    EXECUTE,
    READ,
    AclEntry,
    AclUnreadable,
    FileAccess,
    document_access,
    object_access,
    parse_posix_acl,
    posix_check,
)
from index.permissions.readers import EVERYONE, Access, Principal, may_read
from index.permissions.rules import AclRule, apply_rules


@dataclass
class FakeDirectory:
    """A user and group database for tests: uid N is user uN, gid N is group gN."""

    memberships: dict[str, set[str]]  # user -> groups (primary included)
    known_uids: set[int]
    known_gids: set[int]

    def user_token(self, uid: int) -> str:
        return f"user:u{uid}" if uid in self.known_uids else f"uid:{uid}"

    def group_token(self, gid: int) -> str:
        return f"group:g{gid}" if gid in self.known_gids else f"gid:{gid}"

    def uid(self, user: str) -> int | None:
        return int(user[1:]) if user.startswith("u") and int(user[1:]) in self.known_uids else None

    def gid(self, group: str) -> int | None:
        return (
            int(group[1:]) if group.startswith("g") and int(group[1:]) in self.known_gids else None
        )

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset(self.memberships.get(user, set()))

    def members(self, group: str) -> frozenset[str]:
        return frozenset(u for u, gs in self.memberships.items() if group in gs)


NAMES = FakeDirectory({"u1": {"g1"}, "u2": {"g2", "g1"}, "u3": {"g3"}}, {1, 2, 3}, {1, 2, 3})


def test_mode_bits_map_to_principals() -> None:
    assert object_access(FileAccess(1, 1, 0o644), READ, NAMES) == Access(
        frozenset({"user:u1", "group:g1", EVERYONE})
    )
    assert object_access(FileAccess(1, 1, 0o640), READ, NAMES).allow == {"user:u1", "group:g1"}
    assert object_access(FileAccess(1, 1, 0o600), READ, NAMES).allow == {"user:u1"}
    assert object_access(FileAccess(1, 1, 0o000), READ, NAMES) == Access(
        frozenset()
    )  # nobody, never public


def test_a_class_without_read_above_one_with_read_is_denied() -> None:
    # 0604: the owner and the group members may not read, everyone else may
    access = object_access(FileAccess(1, 2, 0o204), READ, NAMES)
    assert access.allow == {EVERYONE}
    assert access.deny == {"user:u1", "group:g2"}
    assert may_read(Principal("u3", ("g3",)), access.allow, access.deny)
    assert not may_read(Principal("u2", ("g2", "g1")), access.allow, access.deny)
    assert not may_read(Principal("u1", ("g1",)), access.allow, access.deny)


def test_unknown_ids_become_numeric_tokens() -> None:
    assert object_access(FileAccess(54321, 54322, 0o640), READ, NAMES).allow == {
        "uid:54321",
        "gid:54322",
    }


def test_posix_acl_named_entries_and_mask() -> None:
    acl = (
        AclEntry("user_obj", 6), AclEntry("user", 4, 2), AclEntry("user", 4, 3), AclEntry("group_obj", 0),
        AclEntry("group", 4, 3), AclEntry("mask", 4), AclEntry("other", 0),
    )  # fmt: skip
    assert object_access(FileAccess(1, 1, 0o640, acl), READ, NAMES).allow == {
        "user:u1",
        "user:u2",
        "user:u3",
        "group:g3",
    }
    masked = tuple(AclEntry("mask", 0) if e.tag == "mask" else e for e in acl)
    assert object_access(FileAccess(1, 1, 0o600, masked), READ, NAMES).allow == {
        "user:u1"
    }  # mask hides them


def test_parse_posix_acl_from_xattr_bytes() -> None:
    raw = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, ident)
        for tag, perm, ident in [
            (1, 6, 0xFFFFFFFF),
            (2, 4, 1000),
            (4, 4, 0xFFFFFFFF),
            (8, 4, 50),
            (16, 4, 0xFFFFFFFF),
            (32, 0, 0xFFFFFFFF),
        ]
    )
    assert parse_posix_acl(raw) == (
        AclEntry("user_obj", 6), AclEntry("user", 4, 1000), AclEntry("group_obj", 4), AclEntry("group", 4, 50),
        AclEntry("mask", 4), AclEntry("other", 0),
    )  # fmt: skip
    with pytest.raises(AclUnreadable):
        parse_posix_acl(b"\x01\x00\x00\x00garbage!")


def test_a_public_file_in_a_closed_directory_is_not_public() -> None:
    file = FileAccess(1, 1, 0o644)
    closed = FileAccess(1, 1, 0o750)  # only u1 and g1 may traverse
    access = document_access(file, [FileAccess(0, 0, 0o755), closed], NAMES)
    assert EVERYONE not in access.allow
    assert may_read(Principal("u2", ("g2", "g1")), access.allow, access.deny)
    assert not may_read(Principal("u3", ("g3",)), access.allow, access.deny)
    assert not may_read(Principal(), access.allow, access.deny)


def test_group_and_group_traversal_expands_to_common_members() -> None:
    file = FileAccess(9, 2, 0o640)  # readable by group g2
    directory = FileAccess(9, 1, 0o710)  # traversable by group g1
    access = document_access(file, [directory], NAMES)
    assert access.allow == {"uid:9", "user:u2"}  # the owner, and the one user in both groups


def test_rules_apply_in_order_restrict_grant_deny() -> None:
    base = Access(frozenset({EVERYONE}))
    rules = [
        AclRule(share="hr", path="payroll/*", restrict_to=("group:g1",)),
        AclRule(share="hr", path="payroll/*", grant=("user:u3",), deny=("user:u2",)),
        AclRule(share="other", path="*", deny=(EVERYONE,)),
    ]
    access = apply_rules(base, rules, "hr", "payroll/2026/may.xlsx", NAMES)
    assert access.allow == {"group:g1", "user:u3"} and access.deny == {"user:u2"}
    assert may_read(Principal("u1", ("g1",)), access.allow, access.deny)
    assert may_read(Principal("u3", ("g3",)), access.allow, access.deny)
    assert not may_read(Principal("u2", ("g2", "g1")), access.allow, access.deny)
    assert apply_rules(base, rules, "hr", "handbook.pdf", NAMES) == base


# -- property: the tokens never let through what POSIX refuses, and let through what they encode --
perm = st.integers(0, 7)
uid_st = st.integers(1, 4)  # 4 has no name
gid_st = st.integers(1, 4)


@st.composite
def objects(draw: st.DrawFn) -> FileAccess:
    uid, gid = draw(uid_st), draw(gid_st)
    if not draw(st.booleans()):
        return FileAccess(uid, gid, draw(perm) << 6 | draw(perm) << 3 | draw(perm))
    named_users = draw(st.dictionaries(uid_st, perm, max_size=2))
    named_groups = draw(st.dictionaries(gid_st, perm, max_size=2))
    acl = [
        AclEntry("user_obj", draw(perm)),
        AclEntry("group_obj", draw(perm)),
        AclEntry("other", draw(perm)),
    ]
    acl += [AclEntry("user", p, u) for u, p in named_users.items()]
    acl += [AclEntry("group", p, g) for g, p in named_groups.items()]
    acl.append(AclEntry("mask", draw(perm)))
    return FileAccess(uid, gid, 0, tuple(acl))


principals = st.builds(
    lambda u, extra: (u, extra),
    st.sampled_from(["u1", "u2", "u3", "u9", None]),
    st.sets(st.sampled_from(["g1", "g2", "g3"]), max_size=2),
)


def _oracle(user: str | None, extra: set[str], file: FileAccess, parents: list[FileAccess]) -> bool:
    """Exact POSIX: traverse every parent, then read the file, as this identity."""
    uid = NAMES.uid(user) if user else None
    groups = (NAMES.groups_of(user) if user else frozenset()) | extra
    gids = {g for g in (NAMES.gid(name) for name in groups) if g is not None}
    return (
        all(posix_check(uid, gids, d, EXECUTE)[0] for d in parents)
        and posix_check(uid, gids, file, READ)[0]
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=objects(), parents=st.lists(objects(), max_size=3), who=principals)
def test_tokens_are_sound_against_the_exact_posix_check(
    file: FileAccess, parents: list[FileAccess], who
) -> None:
    user, extra = who
    groups = (NAMES.groups_of(user) if user else frozenset()) | extra
    access = document_access(file, parents, NAMES)
    if may_read(Principal(user, tuple(sorted(groups))), access.allow, access.deny):
        assert _oracle(user, extra, file, parents), (access, user, groups)


@settings(max_examples=600, deadline=None)
@given(file=objects(), who=principals)
def test_tokens_are_exact_for_monotone_permissions(file: FileAccess, who) -> None:
    """Where no class is refused what a class below it gets (the usual case), the tokens let
    through exactly those POSIX lets through."""
    entries = file.entries()
    mask = next((e.perm for e in entries if e.tag == "mask"), 7)
    other = next(e.perm for e in entries if e.tag == "other")
    effective = [
        e.perm & (mask if e.tag != "user_obj" and file.acl else 7)
        for e in entries
        if e.tag not in ("mask", "other")
    ]
    if any((p & READ) < (other & READ) for p in effective):
        return
    groups_granting = [e for e in entries if e.tag in ("group", "group_obj")]
    if len(groups_granting) > 1 and len({e.perm & mask & READ for e in groups_granting}) > 1:
        return
    user, extra = who
    groups = (NAMES.groups_of(user) if user else frozenset()) | extra
    access = document_access(file, [], NAMES)
    ours = may_read(Principal(user, tuple(sorted(groups))), access.allow, access.deny)
    assert ours == _oracle(user, extra, file, [])


# -- property: through Qdrant, with share rules ------------------------------------------------
rule_tokens = st.sampled_from(
    ["group:g1", "group:g2", "group:g3", "user:u1", "user:u2", "user:u3", EVERYONE]
)


@st.composite
def rules_st(draw: st.DrawFn) -> list[AclRule]:
    out = []
    for _ in range(draw(st.integers(0, 2))):
        out.append(AclRule(
            share="s", path=draw(st.sampled_from(["*", "hr/*", "*.txt"])),
            grant=tuple(draw(st.lists(rule_tokens, max_size=1))),
            restrict_to=tuple(draw(st.lists(rule_tokens, max_size=2))),
            deny=tuple(draw(st.lists(rule_tokens, max_size=1))),
        ))  # fmt: skip
    return out


def _matches(user: str | None, groups: frozenset[str], tokens: tuple[str, ...]) -> bool:
    return bool(set(Principal(user, tuple(sorted(groups))).tokens()) & set(tokens))


def _oracle_with_rules(user: str | None, extra: set[str], file: FileAccess, parents: list[FileAccess],
                       rules: list[AclRule], path: str) -> bool:  # fmt: skip
    groups = (NAMES.groups_of(user) if user else frozenset()) | extra
    allowed = _oracle(user, extra, file, parents)
    denied = False
    for rule in rules:
        if not rule.matches("s", path):
            continue
        if rule.restrict_to:
            allowed = allowed and _matches(user, groups, rule.restrict_to)
        allowed = allowed or _matches(user, groups, rule.grant)
        denied = denied or _matches(user, groups, rule.deny)
    return allowed and not denied


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=st.lists(st.tuples(objects(), st.lists(objects(), max_size=2), st.sampled_from(["a.txt", "hr/p.md", "x.md"])),
                  min_size=1, max_size=6),
    rules=rules_st(),
    who=st.lists(principals, min_size=1, max_size=4),
)  # fmt: skip
def test_search_never_returns_what_a_principal_may_not_read(tree, rules, who) -> None:
    """Random documents (file, parent directories, path), rules and principals, indexed into
    Qdrant: the ACL filter returns nothing the exact POSIX check and the rules refuse, and
    exactly what the encoded tokens allow."""
    from qdrant_client import QdrantClient, models

    from index.permissions.filter import acl_filter

    client = QdrantClient(":memory:")
    client.create_collection(
        "t", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
    )
    docs = []
    for n, (file, parents, path) in enumerate(tree):
        access = apply_rules(document_access(file, parents, NAMES), rules, "s", path, NAMES)
        allow, deny = access.as_lists()
        client.upsert(
            "t",
            [
                models.PointStruct(
                    id=n, vector=[1.0, 0.0], payload={"metadata": {"acl": allow, "acl_deny": deny, "share_acl": ["everyone"]}}
                )
            ],
        )
        docs.append((file, parents, path, access))
    for user, extra in who:
        groups = (NAMES.groups_of(user) if user else frozenset()) | extra
        principal = Principal(user, tuple(sorted(groups)))
        found = {
            int(p.id) for p in client.scroll("t", scroll_filter=acl_filter(principal), limit=100)[0]
        }
        for n, (file, parents, path, access) in enumerate(docs):
            if n in found:
                assert _oracle_with_rules(user, extra, file, parents, rules, path), (
                    n,
                    principal,
                    access,
                )
            assert (n in found) == may_read(principal, access.allow, access.deny)
