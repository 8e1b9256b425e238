import io
import os
import socket
import zipfile
from pathlib import Path

import pytest

from ingest.errors import (
    CorruptDocument,
    DecompressionBomb,
    EmptyDocument,
    NotARegularFile,
    OutsideShare,
    TooLarge,
    Unreadable,
)
from ingest.guards import check_zip_container, decode_text, read_file_in_share, resolve_in_share


def test_dotdot_and_absolute_paths_are_refused(share: Path) -> None:
    for bad in ("../etc/passwd", "a/../../x", "/etc/passwd"):
        with pytest.raises(OutsideShare):
            resolve_in_share(str(share), bad)


def test_symlink_leaving_the_share_is_never_read(share: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    (share / "link.txt").symlink_to(secret)
    with pytest.raises(OutsideShare, match="outside"):
        read_file_in_share(str(share), "link.txt", 1000)


def test_directory_symlink_leaving_the_share_is_never_read(share: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("TOPSECRET")
    (share / "dir").symlink_to(outside)
    with pytest.raises(OutsideShare):
        read_file_in_share(str(share), "dir/a.txt", 1000)


def test_fifo_is_refused_without_blocking(share: Path) -> None:
    os.mkfifo(share / "pipe.txt")  # opening a FIFO for reading would block without O_NONBLOCK
    with pytest.raises(NotARegularFile, match="FIFO"):
        read_file_in_share(str(share), "pipe.txt", 1000)


def test_socket_is_refused(share: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(share / "s.txt"))
    sock.close()
    with pytest.raises(NotARegularFile, match="socket"):
        read_file_in_share(str(share), "s.txt", 1000)


def test_unreadable_file_is_a_recorded_error(share: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (share / "locked.txt").write_text("x")

    def denied(*_args: object) -> int:  # tests run as root, who may open any mode: simulate EACCES
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(Unreadable, match="Permission denied"):
        read_file_in_share(str(share), "locked.txt", 1000)


def test_size_limit_and_empty_file(share: Path) -> None:
    (share / "big.txt").write_bytes(b"x" * 2000)
    (share / "empty.txt").write_bytes(b"")
    with pytest.raises(TooLarge, match="2,000 bytes"):
        read_file_in_share(str(share), "big.txt", 1000)
    with pytest.raises(EmptyDocument):
        read_file_in_share(str(share), "empty.txt", 1000)
    content = read_file_in_share(str(share), "big.txt", 5000)
    assert content.data == b"x" * 2000
    assert content.mtime_ns == (share / "big.txt").stat().st_mtime_ns


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_is_refused_from_the_declared_sizes() -> None:
    bomb = _zip({"word/document.xml": b"\0" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(DecompressionBomb, match="expands to 20,971,520 bytes"):
        check_zip_container(bomb, "docx", max_uncompressed=10 * 1024 * 1024)
    check_zip_container(bomb, "docx", max_uncompressed=30 * 1024 * 1024)


def test_not_a_zip_is_corrupt() -> None:
    with pytest.raises(CorruptDocument, match="not a valid DOCX"):
        check_zip_container(b"this is not a zip", "docx", 10**9)


def test_decode_text_handles_japanese_encodings_and_refuses_binaries() -> None:
    text = "品質管理の手順書です。"
    assert decode_text(text.encode("utf-8")) == text
    assert decode_text(text.encode("cp932")) == text
    assert decode_text("\ufeff".encode() + text.encode("utf-8")) == text
    with pytest.raises(CorruptDocument, match="binary"):
        decode_text(b"abc\x00\x01\x02def")
