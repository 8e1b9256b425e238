"""The members of zip and tar archives, read from memory without ever touching the disk.

Nothing is extracted: each member is read into memory when its turn comes, so a hostile name
(``../../etc/passwd``, an absolute path) can never write or read outside anything; it is still
refused, with its reason, because it would give a confusing address. The declared sizes are
checked against the limits before any member is inflated (Python's zipfile never inflates past
a member's declared size, tarfile never reads past a header's), so a bomb is refused before it
costs memory. Encrypted members, links and devices are listed with their reason, never read.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace

from ingest.errors import CorruptDocument, DecompressionBomb, IngestError

#: archive formats whose members are documents (the filetype names of ``parse.FORMATS``)
ARCHIVE_FILETYPES = frozenset({"zip", "tar"})
#: compressed tar suffixes, recognised before the last extension (``x.tar.gz`` is a tar)
TAR_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz")

_UTF8_NAMES = 0x800  # zip general purpose flag: the name is UTF-8
_ENCRYPTED = 0x1  # zip general purpose flag: the member is encrypted


@dataclass(frozen=True)
class Part:
    """One file inside a container: its name there, its size, and how to read it; ``problem``
    (status, reason) when it will not be read."""

    name: str
    size: int
    read: Callable[[], bytes]
    problem: tuple[str, str] | None = None


@dataclass
class Budget:
    """What the members of one file (its nested containers included) may add up to."""

    max_bytes: int
    max_members: int
    max_member_bytes: int
    used_bytes: int = 0
    members: int = 0

    def count(self, what: str) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise DecompressionBomb(
                f"{what} holds more than {self.max_members:,} members (the limit)"
            )

    def take(self, size: int, what: str) -> None:
        self.used_bytes += size
        if self.used_bytes > self.max_bytes:
            raise DecompressionBomb(
                f"decompression bomb: {what} expands past {self.max_bytes:,} bytes"
            )


def archive_parts(data: bytes, filetype: str, budget: Budget) -> list[Part]:
    """The members of an archive (folders left out); raises for a damaged or hostile archive."""
    if filetype == "zip":
        return _zip_parts(data, budget)
    if filetype == "tar":
        return _tar_parts(data, budget)
    raise ValueError(f"not an archive filetype: {filetype}")


def safe_name(raw: str) -> str | None:
    """The member's path inside the archive, POSIX form; None when it would leave the archive
    (``..``, an absolute or drive path) or holds characters no path may hold."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\x00" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return posixpath.join(*parts)


def _unsafe(raw: str, index: int, size: int) -> Part:
    base = raw.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].replace("\x00", "") or "member"
    reason = f"unsafe member name {raw!r}: it points outside the archive; never read"
    return Part(f"unsafe-name-{index}/{base}", size, _never, ("failed", reason))


def _never() -> bytes:
    raise AssertionError("a member with a problem is never read")


def _zip_name(info: zipfile.ZipInfo) -> str:
    """Japanese Windows wrote Shift_JIS names without the UTF-8 flag: zipfile reads those as
    cp437; read them again as cp932 where that is what they are."""
    if info.flag_bits & _UTF8_NAMES:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("cp932")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _zip_parts(data: bytes, budget: Budget) -> list[Part]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptDocument(f"not a valid zip archive: {exc}") from exc
    files = [i for i in infos if not i.is_dir()]
    declared = sum(i.file_size for i in files)
    if len(files) > budget.max_members:
        raise DecompressionBomb(
            f"zip archive holds {len(files):,} files, over the limit of {budget.max_members:,}"
        )
    if budget.used_bytes + declared > budget.max_bytes:
        raise DecompressionBomb(
            f"decompression bomb: the zip archive expands to {declared:,} bytes from "
            f"{len(data):,} (limit {budget.max_bytes:,})"
        )
    parts: list[Part] = []
    for index, info in enumerate(files):
        raw = _zip_name(info)
        name = safe_name(raw)
        if name is None:
            parts.append(_unsafe(raw, index, info.file_size))
            continue
        if info.flag_bits & _ENCRYPTED:
            reason = "password-protected member: it cannot be read without its password"
            parts.append(Part(name, info.file_size, _never, ("failed", reason)))
            continue
        parts.append(Part(name, info.file_size, _zip_reader(zf, info)))
    return unique_names(parts)


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return zf.read(info)
        except NotImplementedError as exc:  # a compression method zipfile does not have
            raise CorruptDocument(f"member compressed in a way that cannot be read: {exc}") from exc
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise CorruptDocument(f"damaged member: {exc}") from exc

    return read


def _tar_parts(data: bytes, budget: Budget) -> list[Part]:
    parts: list[Part] = []
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 (read lazily)
        for index, info in enumerate(tf):
            if info.isdir():
                continue
            if len(parts) >= budget.max_members:
                raise DecompressionBomb(
                    f"tar archive holds more than {budget.max_members:,} files (the limit)"
                )
            name = safe_name(info.name)
            if name is None:
                parts.append(_unsafe(info.name, index, info.size))
            elif info.issym() or info.islnk():
                reason = f"a link inside the archive (to {info.linkname!r}); links are not followed"
                parts.append(Part(name, 0, _never, ("skipped", reason)))
            elif not info.isreg():
                parts.append(Part(name, 0, _never, ("skipped", "not a regular file; never read")))
            else:
                if budget.used_bytes + info.size > budget.max_bytes:
                    raise DecompressionBomb(
                        f"decompression bomb: the tar archive expands past "
                        f"{budget.max_bytes:,} bytes from {len(data):,}"
                    )
                parts.append(Part(name, info.size, _tar_reader(tf, info)))
    except IngestError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise CorruptDocument(f"not a valid tar archive: {exc}") from exc
    return unique_names(parts)


def _tar_reader(tf: tarfile.TarFile, info: tarfile.TarInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            fh = tf.extractfile(info)
            return fh.read() if fh is not None else b""
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise CorruptDocument(f"damaged member: {exc}") from exc

    return read


def unique_names(parts: list[Part]) -> list[Part]:
    """A name that occurs twice (zip allows it) gets a suffix: every address is one document."""
    seen: dict[str, int] = {}
    out = []
    for part in parts:
        n = seen.get(part.name, 0) + 1
        seen[part.name] = n
        out.append(part if n == 1 else replace(part, name=numbered(part.name, n)))
    return out


def numbered(name: str, n: int) -> str:
    """``report.pdf`` -> ``report~2.pdf``: the extension still says what it is."""
    stem, dot, extension = name.rpartition(".")
    if not dot or "/" in extension:
        return f"{name}~{n}"
    return f"{stem}~{n}.{extension}"
