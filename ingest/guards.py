"""Checks that run before any parser touches a file: where it is, what it is, how big it gets."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from dataclasses import dataclass
from typing import NoReturn

from ingest.errors import (
    CorruptDocument,
    DecompressionBomb,
    EmptyDocument,
    EncryptedDocument,
    FileChanged,
    NotARegularFile,
    OutsideShare,
    TooLarge,
    Unreadable,
)
from ingest.paths import to_os
from ingest.sharefs import components, parent_fd

ZIP_FORMATS = frozenset({"docx", "pptx", "xlsx"})
_MAX_ZIP_ENTRIES = 20_000


def resolve_in_share(root: str, relpath: str) -> str:
    """Absolute path of ``relpath`` (a text form) under ``root``; raises OutsideShare if it would
    leave it (``..``, an absolute path)."""
    return os.fsdecode(os.path.join(os.fsencode(os.path.realpath(root)), *components(relpath)))


def describe_mode(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


@dataclass(frozen=True)
class FileContent:
    data: bytes
    #: the file's mtime when it was opened: a later stat that differs means it changed since
    mtime_ns: int


def read_file_in_share(root: str, relpath: str, max_bytes: int) -> FileContent:
    """Read a regular file inside the share without following a symlink or blocking on a FIFO.

    ``relpath`` is a text form (``ingest.paths``); every folder on the way is opened relative to
    the one above it, so no parent can be a link and no path is too long."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        with parent_fd(root, relpath) as (dir_fd, name):
            try:
                fd = os.open(name, flags, dir_fd=dir_fd)
            except OSError as exc:
                _refuse(exc, root, relpath, dir_fd, name)
    except FileNotFoundError as exc:
        raise FileChanged("the file disappeared before it could be read") from exc
    except NotADirectoryError as exc:
        raise FileChanged("a folder on its path is no longer a folder") from exc
    except OSError as exc:
        raise Unreadable(f"cannot read the file: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"{describe_mode(st.st_mode)}, not a regular file; never opened")
        if st.st_size > max_bytes:
            raise TooLarge(f"file is {st.st_size:,} bytes, over the limit of {max_bytes:,}")
        if st.st_size == 0:
            raise EmptyDocument("empty file (0 bytes)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise TooLarge(f"file grew past the limit of {max_bytes:,} bytes while being read")
    return FileContent(data, st.st_mtime_ns)


def _refuse(exc: OSError, root: str, relpath: str, dir_fd: int, name: bytes) -> NoReturn:
    """Why the file could not be opened, as the error the catalog records."""
    if isinstance(exc, FileNotFoundError):
        raise exc
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except OSError:
        mode = stat.S_IFREG
    if stat.S_ISLNK(mode):  # O_NOFOLLOW: the last component is a symlink
        raise OutsideShare(
            f"symbolic link to {link_target(root, relpath)} the share; links are not followed"
        ) from exc
    if not stat.S_ISREG(mode):  # a socket answers open() with ENXIO
        raise NotARegularFile(f"{describe_mode(mode)}, not a regular file; never opened") from exc
    raise Unreadable(f"cannot read the file: {exc.strerror}") from exc


def link_target(root: str, relpath: str) -> str:
    """Where a symbolic link points, for the reason recorded: "inside" or "outside"."""
    real_root = os.path.realpath(root)
    try:
        target = os.path.realpath(os.path.join(real_root, to_os(relpath)))
    except (OSError, ValueError):
        return "somewhere outside"
    return "inside" if target.startswith(real_root + os.sep) else "outside"


def check_zip_container(data: bytes, filetype: str, max_uncompressed: int) -> None:
    """Office files are zips: refuse corrupt ones and ones that expand past the limit.

    Python's zipfile never inflates a member past its declared size, so checking the declared
    sizes here bounds what the parsers can be made to allocate.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CorruptDocument(
            f"not a valid {filetype.upper()} file (bad zip container: {exc})"
        ) from exc
    if len(infos) > _MAX_ZIP_ENTRIES:
        raise DecompressionBomb(f"zip container holds {len(infos):,} entries")
    total = sum(info.file_size for info in infos)
    if total > max_uncompressed:
        raise DecompressionBomb(
            f"decompression bomb: {filetype.upper()} expands to {total:,} bytes "
            f"from {len(data):,} (limit {max_uncompressed:,})"
        )


def check_pdf(data: bytes) -> int:
    """Refuse password-protected and unreadable PDFs; return the page count."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise CorruptDocument("not a valid PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedDocument(
                "password-protected PDF: it cannot be read without its password"
            )
        return len(reader.pages)
    except EncryptedDocument:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise CorruptDocument(f"not a valid PDF file ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # pypdf raises many kinds on broken input
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise EncryptedDocument(f"encrypted PDF that cannot be opened: {exc}") from exc
        raise CorruptDocument(f"not a valid PDF file ({type(exc).__name__}: {exc})") from exc


def decode_text(data: bytes) -> str:
    """Decode a text file (UTF-8, UTF-16 with BOM, or the Shift_JIS family); refuse binaries."""
    for bom, codec in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    if b"\x00" in data[:65536]:
        raise CorruptDocument("binary content in a text file (NUL bytes)")
    for codec in ("utf-8", "cp932", "euc-jp"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    text = data.decode("utf-8", errors="replace")
    if text.count("\ufffd") > len(text) // 10:
        raise CorruptDocument("binary content in a text file (not valid UTF-8 or Shift_JIS)")
    return text
