"""Large plain-text documents, read in parts: each part is parsed and chunked on its own, so
that a 100 MB log or export never has to be parsed (or held, chunked) in one piece.

Part ``k`` of a file nominally covers bytes ``[k * part_bytes, (k + 1) * part_bytes)``; its real
edges are moved forward to the next blank line (else the next line break) within half a part,
by a rule that depends only on the bytes, so every part finds the same edges on its own and
parts can be parsed in any order, in any process. A line break is the same byte in UTF-8 and the
Shift_JIS family (never inside a multi-byte character); a UTF-16 file is not cut (it is read
whole, as before).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from ingest.errors import EmptyDocument
from ingest.models import ParsedDocument, PreparedDocument, SourceFile
from ingest.stages.chunk import DocumentChunker
from ingest.stages.parse import ParseOptions, filetype_of, parse_content

#: formats read in parts when large (their text has no structure that spans a blank line)
PART_FILETYPES = frozenset({"txt", "md"})

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def can_split(path: str) -> bool:
    try:
        return filetype_of(path) in PART_FILETYPES
    except Exception:
        return False


def part_count(size: int, part_bytes: int) -> int:
    return max(1, -(-size // part_bytes))


def edge(data: bytes, nominal: int, part_bytes: int) -> int:
    """Where a part that nominally starts at ``nominal`` really starts."""
    if nominal <= 0:
        return 0
    if nominal >= len(data):
        return len(data)
    limit = min(len(data), nominal + part_bytes // 2)
    for mark in (b"\n\n", b"\n"):
        at = data.find(mark, nominal, limit)
        if at >= 0:
            return at + len(mark)
    at = nominal  # one long line: cut it, but not inside a UTF-8 character
    while at > 0 and data[at] & 0xC0 == 0x80:
        at -= 1
    return at


def prepare_part(
    source: SourceFile, options: ParseOptions, chunker: DocumentChunker
) -> PreparedDocument:
    """Part ``source.part`` of a large text file, chunked; chunk indexes count from 0 (the
    caller numbers them on). Part 0 carries the hash of the whole file; the others an empty
    hash. A file that cannot be cut (UTF-16) comes back whole, with ``part`` = -1."""
    filetype = filetype_of(source.path)
    options = options.for_share(source.share)
    content = options.read(source)
    data = content.data
    if data.startswith(_UTF16_BOMS):
        parsed = parse_content(data, content.mtime_ns, filetype, source.path, options)
        whole = replace(source, part=-1)
        return PreparedDocument(whole, parsed, tuple(chunker.run(parsed.elements)))
    size = source.part_bytes
    start = edge(data, source.part * size, size)
    end = edge(data, (source.part + 1) * size, size)
    digest = hashlib.sha256(data).hexdigest() if source.part == 0 else ""
    try:
        parsed = parse_content(data[start:end], content.mtime_ns, filetype, source.path, options)
    except EmptyDocument:  # a blank stretch: a part without chunks (the whole may have text)
        blank = ParsedDocument(digest, len(data), content.mtime_ns, (), filetype)
        return PreparedDocument(source, blank, ())
    parsed = replace(parsed, content_hash=digest, size=len(data))
    return PreparedDocument(source, parsed, tuple(chunker.run(parsed.elements)))
