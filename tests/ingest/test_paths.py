"""File names that are not UTF-8: the text form round-trips to the bytes, the display form reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import paths, sharefs
from ingest.errors import OutsideShare
from ingest.guards import read_file_in_share

NAMES = {
    "cp932": "報告書/議事録①.txt".encode("cp932"),
    "euc_jp": "設計書/仕様　第２版.txt".encode("euc_jp"),
    "stray": b"stray\xff\xfe\x80.txt",
    "so_0x5c": "ソフト表.txt".encode("cp932"),  # the trail byte of ソ and 表 is a backslash
}


@pytest.mark.parametrize("encoding", sorted(NAMES))
def test_legacy_names_round_trip_and_read(encoding: str) -> None:
    raw = NAMES[encoding]
    text = paths.from_bytes(raw)
    text.encode("utf-8")  # storable anywhere: no lone surrogates
    assert paths.to_bytes(text) == raw
    assert paths.from_os(os.fsdecode(raw)) == text
    assert paths.to_os(text) == os.fsdecode(raw)


def test_display_decodes_the_legacy_encoding() -> None:
    assert paths.display(paths.from_bytes(NAMES["cp932"])) == "報告書/議事録①.txt"
    assert paths.display(paths.from_bytes(NAMES["euc_jp"])) == "設計書/仕様　第２版.txt"
    assert paths.display(paths.from_bytes(NAMES["so_0x5c"])) == "ソフト表.txt"
    assert paths.display(paths.from_bytes(NAMES["stray"])) == "stray\\xff\\xfe\\x80.txt"
    mixed = "データ/".encode() + "報告".encode("cp932") + b"/" + "設計".encode("euc_jp")
    assert paths.display(paths.from_bytes(mixed)) == "データ/報告/設計"
    assert paths.display("line\nbreak.txt") == "line\\nbreak.txt"  # one line in a listing


def test_utf8_names_keep_their_form() -> None:
    for name in ("docs/report.pdf", "データ/報告書.docx", "a b/c%41.txt", "line\nbreak.txt"):
        assert paths.from_bytes(name.encode()) == name
    # a backslash is escaped: it is what marks the escaped form
    assert paths.from_bytes(b"a\\x41") == "a\\\\x41"
    assert paths.to_bytes("a\\\\x41") == b"a\\x41"


def test_strings_no_name_maps_to_are_refused() -> None:
    for bad in ("a\\b", "trailing\\", "x\\xZZ", "\udc83", "a\\x41", "a\\x2f", "nul\x00"):
        with pytest.raises(paths.BadPath):
            paths.to_bytes(bad)
        assert not paths.is_text_form(bad)


_names = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(st.lists(_names, min_size=1, max_size=4), st.lists(_names, min_size=1, max_size=4))
def test_text_form_is_a_bijection_and_composes_over_slashes(a: list[bytes], b: list[bytes]) -> None:
    ra, rb = b"/".join(a), b"/".join(b)
    ta, tb = paths.from_bytes(ra), paths.from_bytes(rb)
    assert paths.to_bytes(ta) == ra
    assert (ta == tb) == (ra == rb)
    assert ta == "/".join(paths.from_bytes(part) for part in a)
    assert paths.is_text_form(ta)


def _deep(root: Path, depth: int, name: bytes) -> list[bytes]:
    """``depth`` nested folders named ``name`` (plus their level), made through descriptors:
    the whole path is longer than the kernel takes in one call."""
    parts = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(depth):
        part = name[: 250 - 3] + b"%03d" % level
        os.mkdir(part, dir_fd=fd)
        nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
        parts.append(part)
    os.close(fd)
    return parts


def test_files_past_path_max_are_read(tmp_path: Path) -> None:
    parts = _deep(tmp_path, 30, "深い階層".encode("cp932") * 40)
    rel = b"/".join(parts)
    assert len(rel) > 4096
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    for part in parts:
        fd, old = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(old)
    leaf = os.open(b"f.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, b"deep content")
    os.close(leaf)
    os.close(fd)
    text = paths.from_bytes(rel + b"/f.txt")
    assert read_file_in_share(str(tmp_path), text, 1000).data == b"deep content"
    assert sharefs.lstat(str(tmp_path), text).st_size == len(b"deep content")


def test_a_parent_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    share, outside = tmp_path / "share", tmp_path / "outside"
    share.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("TOPSECRET")
    (share / "linked").symlink_to(outside)
    with pytest.raises(OutsideShare, match="parent directory is a symbolic link"):
        read_file_in_share(str(share), "linked/secret.txt", 1000)
    with pytest.raises(OutsideShare):  # not even its size, owner or ACL
        sharefs.lstat(str(share), "linked/secret.txt")
    for bad in ("../outside/secret.txt", "/etc/passwd"):
        with pytest.raises(OutsideShare):
            read_file_in_share(str(share), bad, 1000)
