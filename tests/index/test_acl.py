import grp
import pwd

from index.acl import EVERYONE, Principal, acl_from_mode


def test_mode_bits_map_to_principals() -> None:
    root_user, root_group = pwd.getpwuid(0).pw_name, grp.getgrgid(0).gr_name
    assert acl_from_mode(0, 0, 0o644) == [f"user:{root_user}", f"group:{root_group}", EVERYONE]
    assert acl_from_mode(0, 0, 0o640) == [f"user:{root_user}", f"group:{root_group}"]
    assert acl_from_mode(0, 0, 0o600) == [f"user:{root_user}"]
    assert acl_from_mode(0, 0, 0o000) == []  # nobody: never public by default


def test_unknown_ids_become_numeric_tokens() -> None:
    assert acl_from_mode(54321, 54322, 0o640) == ["uid:54321", "gid:54322"]


def test_principal_tokens() -> None:
    assert Principal().tokens() == [EVERYONE]
    assert Principal("alice", ("eng", "hr")).tokens() == [
        EVERYONE,
        "user:alice",
        "group:eng",
        "group:hr",
    ]
