"""Containers: messages and archives, whose attachments and members are documents of their own.

A container is parsed in one go, in the parse process and under its limits: the container's own
document (a message's subject, sender, recipients, date and body; an archive's list of files),
then each member, read from memory, parsed and chunked like a file of the share. A member is
addressed by its path inside the file, nested containers joined by ``#``::

    mail/offer.msg#attachments/prices.xlsx
    reports/2024.zip#q3/summary.pdf
    mail/offer.msg#attachments/scans.zip#page1.tif

Members whose bytes the index already holds (``SourceFile.known_members``) are hashed, not parsed
again: an edited archive costs the members that changed. A member that cannot be indexed
(unsupported, encrypted, damaged, too large, nested too deep) is recorded with its reason; the
other members and the container go on. The sizes of all members together are bounded
(``max_uncompressed_bytes``, ``max_members``), nested ones included.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

from ingest.archives import ARCHIVE_FILETYPES, Budget, Part, archive_parts
from ingest.errors import (
    CorruptDocument,
    IngestError,
    SkippedDocument,
    TooLarge,
    TransientError,
)
from ingest.guards import FileContent
from ingest.mail import MAIL_FILETYPES, MailMessage, read_message
from ingest.models import Element, Member, ParsedDocument, PreparedDocument, SourceFile
from ingest.readers import Readers
from ingest.stages.chunk import DocumentChunker
from ingest.stages.parse import ParseOptions, filetype_of, parse_bytes, parse_content
from ingest.text import normalize_space

CONTAINER_FILETYPES = ARCHIVE_FILETYPES | MAIL_FILETYPES
#: names listed in an archive's own document (the rest are counted)
_LISTED = 500
_PARAGRAPHS = re.compile(r"\n\s*\n")


def is_container(path: str) -> bool:
    try:
        return filetype_of(path) in CONTAINER_FILETYPES
    except IngestError:
        return False


def prepare_container(
    source: SourceFile, options: ParseOptions, chunker: DocumentChunker
) -> PreparedDocument:
    """The container's own document, with every member found in it; raises an IngestError when
    the container itself cannot be read (its members are then left as they are)."""
    filetype = filetype_of(source.path)
    options = options.for_share(source.share)
    content = options.read(source)
    budget = Budget(options.max_uncompressed_bytes, options.max_members, options.max_file_bytes)
    expander = _Expander(source, content, options, chunker, budget)
    own, parts = expander.open(content.data, filetype, source.path)
    parsed = _parsed(content.data, content.mtime_ns, filetype, own)
    top = replace(source, known_members=())
    expander.expand(parts, "", depth=1)
    return PreparedDocument(
        top, parsed, tuple(chunker.run(parsed.elements)), members=tuple(expander.members)
    )


def read_source(source: SourceFile, max_bytes: int, readers: Readers | None = None) -> FileContent:
    """The bytes of a file, or of the member it names: the file is read (through its share's
    reader) and opened in memory (figures of an attachment are read again this way)."""
    content = (readers or Readers()).read(source.root, source.path, max_bytes)
    if not source.member:
        return content
    data, name, rest = content.data, source.path, source.member
    budget = Budget(1 << 62, 1 << 30, max_bytes)
    while True:
        parts = _parts(data, filetype_of(name), budget)
        part = _find(parts, rest)
        if part is None or part.problem is not None:
            raise CorruptDocument(f"{rest!r} is no longer in {name}")
        data, name = part.read(), part.name
        if part.name == rest:
            return FileContent(data, content.mtime_ns)
        rest = rest[len(part.name) + 1 :]


def _find(parts: list[Part], address: str) -> Part | None:
    """The member an address starts with: itself, or the container it goes on in (a member's
    own name may hold ``#``: the longest name that fits wins)."""
    fits = [p for p in parts if address == p.name or address.startswith(p.name + "#")]
    return max(fits, key=lambda p: len(p.name), default=None)


def _parts(data: bytes, filetype: str, budget: Budget) -> list[Part]:
    if filetype in MAIL_FILETYPES:
        return read_message(data, filetype).attachments
    return archive_parts(data, filetype, budget)


def _parsed(data: bytes, mtime_ns: int, filetype: str, elements: list[Element]) -> ParsedDocument:
    return ParsedDocument(
        content_hash=hashlib.sha256(data).hexdigest(), size=len(data), mtime_ns=mtime_ns,
        elements=tuple(elements), filetype=filetype,
    )  # fmt: skip


class _Expander:
    """Walks a container's members, depth first, collecting a Member for each."""

    def __init__(
        self, source: SourceFile, content: FileContent, options: ParseOptions,
        chunker: DocumentChunker, budget: Budget,
    ) -> None:  # fmt: skip
        self.source = source
        self.mtime_ns = content.mtime_ns
        self.top_size = len(content.data)
        self.options = options
        self.chunker = chunker
        self.budget = budget
        self.known = dict(source.known_members)
        self.members: list[Member] = []

    def open(self, data: bytes, filetype: str, name: str) -> tuple[list[Element], list[Part]]:
        """A container's own elements and its members."""
        if filetype in MAIL_FILETYPES:
            message = read_message(data, filetype)
            return self._message_elements(message), message.attachments
        parts = archive_parts(data, filetype, self.budget)
        return _archive_elements(name, parts), parts

    def expand(self, parts: list[Part], prefix: str, depth: int) -> None:
        for part in parts:
            address = prefix + part.name
            self.budget.count("the file")
            if part.problem is not None:
                self.members.append(Member(address, part.size, "", error=part.problem))
                continue
            try:
                self._member(part, address, depth)
            except TransientError:
                raise  # the whole container is tried again (OCR or the VLM unavailable)
            except IngestError as exc:
                self.members.append(Member(address, part.size, "", error=(exc.status, str(exc))))
            except MemoryError:
                reason = "the parser ran out of memory"
                self.members.append(Member(address, part.size, "", error=("failed", reason)))

    def _member(self, part: Part, address: str, depth: int) -> None:
        filetype = filetype_of(part.name)  # UnsupportedType: skipped, never read
        if part.size > self.options.max_file_bytes:
            raise TooLarge(
                f"member is {part.size:,} bytes, over the limit of {self.options.max_file_bytes:,}"
            )
        self.budget.take(part.size, "the file")
        data = part.read()
        digest = hashlib.sha256(data).hexdigest()
        if self.known.get(address) == digest:  # what the index holds: not parsed again
            self.members.append(Member(address, len(data), digest))
            inner = address + "#"
            self.members += [Member(a, 0, h) for a, h in self.known.items() if a.startswith(inner)]
            return
        member_source = replace(
            self.source, size=self.top_size, mtime_ns=self.mtime_ns, member=address,
            known_members=(),
        )  # fmt: skip
        if filetype in CONTAINER_FILETYPES:  # an IngestError is recorded on it by expand()
            if depth >= self.options.max_container_depth:
                raise SkippedDocument(
                    f"a container nested {depth + 1} deep; the limit is "
                    f"{self.options.max_container_depth} (max_container_depth)"
                )
            own, parts = self.open(data, filetype, part.name)
            parsed = _parsed(data, self.mtime_ns, filetype, own)
        else:
            parsed = parse_content(data, self.mtime_ns, filetype, part.name, self.options)
        document = PreparedDocument(member_source, parsed, tuple(self.chunker.run(parsed.elements)))
        self.members.append(Member(address, len(data), digest, document))
        if filetype in CONTAINER_FILETYPES:
            self.expand(parts, address + "#", depth + 1)

    def _message_elements(self, message: MailMessage) -> list[Element]:
        elements: list[Element] = []
        if message.subject:
            elements.append(Element(kind="title", text=message.subject))
        if message.headers:
            elements.append(Element(kind="text", text="\n".join(message.headers)))
        if message.text.strip():
            elements += [
                Element(kind="text", text=text)
                for text in (normalize_space(p) for p in _PARAGRAPHS.split(message.text))
                if text
            ]
        elif message.html.strip():
            elements += parse_bytes(message.html.encode("utf-8"), "html", self.options)
        names = [p.name.removeprefix("attachments/") for p in message.attachments]
        if names:
            elements.append(Element(kind="text", text="Attachments: " + ", ".join(names)))
        return elements


def _archive_elements(name: str, parts: list[Part]) -> list[Element]:
    """An archive's own document: what it holds (found by the names of its files)."""
    base = name.rsplit("/", 1)[-1]
    listed = [p.name for p in parts[:_LISTED]]
    more = f"\n... and {len(parts) - _LISTED:,} more" if len(parts) > _LISTED else ""
    head = f"Archive {base}: {len(parts):,} file(s)" if parts else f"Archive {base}: empty"
    return [Element(kind="text", text="\n".join([head, *listed]) + more)]
