"""Names of files as the index keeps them: one text form that round-trips to the bytes on disk,
and a readable form for people.

POSIX file names are bytes. Old NAS and NFS shares in Japan hold names written in Shift_JIS or
EUC-JP, which are not UTF-8: Python hands them out with lone surrogates (``surrogateescape``),
which no database, JSON document or Qdrant payload can hold. The *text form* of a relative path
(``from_bytes``) is what the catalog, the payload (``metadata.path``), the document id and the API
use:

- a name that is valid UTF-8 and holds no backslash is itself (every existing name keeps its id);
- any other name keeps its valid characters, writes each byte that is not UTF-8 as ``\\xHH`` and
  each backslash as ``\\\\``.

The two sets never meet (the second always holds a backslash, the first never), so ``to_bytes``
gives back exactly the bytes on disk. The escaping is per byte and never touches ``/``, so the text
form of ``a/b`` is the text form of ``a``, a slash, and the text form of ``b``.

``display`` is for people: each component that is not UTF-8 is decoded as CP932 (Shift_JIS) or
EUC-JP, whichever reads as Japanese, and control characters (a newline in a name) are escaped.
It is lossy and never used to find a file.
"""

from __future__ import annotations

import os
import re
import unicodedata

#: what ``from_bytes`` writes: an escaped backslash, or a byte that is not UTF-8 (0x80 and up)
_ESCAPE = re.compile(r"\\(\\|x[89a-f][0-9a-f])")
#: legacy encodings tried for names that are not UTF-8, best first on a tie
NAME_ENCODINGS = ("cp932", "euc_jp")


class BadPath(ValueError):
    """A text form that no file name can have (a stray backslash, a bad escape)."""


def from_bytes(raw: bytes) -> str:
    """The text form of a name (or a relative path) given as bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\\" not in text:
        return text
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        if ch == "\\":
            out.append("\\\\")
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


def from_os(name: str) -> str:
    """The text form of a name as ``os`` functions return it (undecodable bytes as surrogates)."""
    return from_bytes(os.fsencode(name))


def to_bytes(path: str) -> bytes:
    """The bytes on disk of a text form; raises BadPath for a string no name maps to."""
    if "\x00" in path:
        raise BadPath("a file name never holds a NUL character")
    if "\\" not in path:
        try:
            return path.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates: an os string, not a text form
            raise BadPath(f"not a text-form path: {path!r}") from exc
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(path):
        _plain(path[pos : m.start()], out)
        token = m.group(1)
        out += b"\\" if token == "\\" else bytes([int(token[1:], 16)])
        pos = m.end()
    _plain(path[pos:], out)
    return bytes(out)


def _plain(part: str, out: bytearray) -> None:
    if "\\" in part:
        raise BadPath("a backslash in a text-form path must be written \\\\ or \\xHH")
    try:
        out += part.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadPath(f"not a text-form path: {part!r}") from exc


def to_os(path: str) -> str:
    """The text form as the string ``os`` functions take (``open``, ``stat``...)."""
    return os.fsdecode(to_bytes(path))


def is_text_form(path: str) -> bool:
    try:
        return from_bytes(to_bytes(path)) == path
    except BadPath:
        return False


def display(path: str) -> str:
    """A readable form of a text-form path, for people (lossy: never used to find a file)."""
    try:
        raw = to_bytes(path)
    except BadPath:
        return _printable(path)
    return "/".join(_printable(_readable(part)) for part in raw.split(b"/"))


def _readable(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best: tuple[int, str] | None = None
    for codec in NAME_ENCODINGS:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        if any(unicodedata.category(ch) in ("Co", "Cn", "Cc") for ch in text):
            continue  # private-use or unassigned characters: a wrong guess
        score = _japanese_score(text)
        if best is None or score > best[0]:
            best = (score, text)
    return best[1] if best is not None else from_bytes(raw)


def _japanese_score(text: str) -> int:
    """How much ``text`` reads as Japanese, to choose between encodings that both decode it:
    kana, kanji and full-width forms count for; half-width katakana (what EUC-JP bytes look
    like read as CP932) and other scripts count against."""
    score = 0
    for ch in text:
        o = ord(ch)
        if 0x3040 <= o <= 0x30FF or 0x4E00 <= o <= 0x9FFF or 0x3000 <= o <= 0x303F:
            score += 2
        elif 0xFF01 <= o <= 0xFF5E:
            score += 1
        elif o >= 0x80:
            score -= 1
    return score


_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _printable(text: str) -> str:
    """Control characters (a newline in a name) escaped, so that a name stays on one line."""
    return "".join(
        ch.encode("unicode_escape").decode() if unicodedata.category(ch) in _UNPRINTABLE else ch
        for ch in text
    )
