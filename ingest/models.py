"""Data that flows between the stages. Frozen, picklable (it crosses process boundaries)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ElementKind = Literal["title", "text", "list_item", "table", "code", "image_caption"]


@dataclass(frozen=True)
class SourceFile:
    """One file of a share, as the scanner saw it. ``path`` is relative to ``root``, POSIX style."""

    share: str
    root: str
    path: str
    size: int
    mtime_ns: int
    #: a document inside this file (a mail attachment, an archive member): its address in it,
    #: nested ones joined by ``#`` (``attachments/q3.zip#report.pdf``); "" for the file itself
    member: str = ""
    #: a container's members the index holds, as (address, content hash): not parsed again
    known_members: tuple[tuple[str, str], ...] = ()
    #: a large text file read in parts (``ingest.stages.parts``): which part, of what size;
    #: -1: the whole file
    part: int = -1
    part_bytes: int = 0

    @property
    def abspath(self) -> str:
        return f"{self.root.rstrip('/')}/{self.path}"

    @property
    def address(self) -> str:
        """Where the document is, as the catalog and the index name it."""
        return f"{self.path}#{self.member}" if self.member else self.path


@dataclass(frozen=True)
class Element:
    """One structural piece of a parsed document."""

    kind: ElementKind
    text: str
    page_number: int | None = None
    #: for tables: the rows, first row the header, each a list of cell texts
    rows: tuple[tuple[str, ...], ...] | None = None
    #: the VLM layout mode could not read this page (the VLM was down): Tesseract's reading, or
    #: the page's text layer, stands in until the document is read again
    provisional: bool = False


@dataclass(frozen=True)
class ParsedDocument:
    """What the parse stage returns: the elements and the hash of exactly the bytes parsed."""

    content_hash: str
    size: int
    #: the file's mtime when it was read: if the file's mtime differs at commit, this is stale
    mtime_ns: int
    elements: tuple[Element, ...]
    filetype: str
    #: pages that the VLM layout mode should read were read otherwise: parse again later
    vlm_pending: bool = False


@dataclass(frozen=True)
class Chunk:
    """A piece of text sized for the embedding model, with where it came from."""

    index: int
    text: str
    kind: ElementKind
    page_numbers: tuple[int, ...] = ()
    section: str | None = None
    kinds: tuple[ElementKind, ...] = ()
    token_count: int = 0

    @property
    def page_number(self) -> int | None:
        return self.page_numbers[0] if self.page_numbers else None


@dataclass(frozen=True)
class SparseVector:
    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class EmbeddedChunk:
    chunk: Chunk
    dense: tuple[float, ...]
    sparse: SparseVector
    text_hash: str
    reused: bool = False


@dataclass(frozen=True)
class PreparedDocument:
    """A document parsed and chunked, ready for embedding."""

    source: SourceFile
    parsed: ParsedDocument
    chunks: tuple[Chunk, ...] = field(default=())
    #: a container (a message, an archive): the documents inside it; None for other files
    members: tuple[Member, ...] | None = None


@dataclass(frozen=True)
class Member:
    """A document inside a container, as the container's parse found it: parsed, unchanged
    (its bytes are what the index holds), or not indexed with a status and a reason."""

    address: str
    size: int
    content_hash: str
    #: parsed and chunked; None when unchanged or not indexed
    document: PreparedDocument | None = None
    #: why it is not indexed: ("failed" or "skipped", reason)
    error: tuple[str, str] | None = None

    @property
    def unchanged(self) -> bool:
        return self.document is None and self.error is None
