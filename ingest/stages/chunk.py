"""Chunk stage: elements -> chunks sized in the embedding model's own tokens.

Structure first: a title opens a section and stays with the text under it; a table is kept whole
when it fits and otherwise split by rows, each part repeating the header row; an element too big
for one chunk is split at line ends, then at sentence ends (。！？ as well as . ! ?), and only a
single over-long sentence is cut at a token boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ingest.models import Chunk, Element, ElementKind
from ingest.text import join_pieces, split_sentences


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...

    def cut(self, text: str, max_tokens: int) -> list[str]:
        """Split ``text`` into pieces of at most ``max_tokens`` tokens."""
        ...


class HFTokenCounter:
    """Counts with a Hugging Face ``tokenizer.json`` (the embedding model's own tokenizer)."""

    def __init__(self, tokenizer_file: str) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(tokenizer_file)
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def cut(self, text: str, max_tokens: int) -> list[str]:
        offsets = self._tok.encode(text, add_special_tokens=False).offsets
        pieces = []
        start = 0
        while start < len(offsets):
            end = min(start + max_tokens, len(offsets))
            if end < len(offsets):
                # back up to a token that starts a word, so no word is cut in two
                word_start = next(
                    (j for j in range(end, start, -1) if offsets[j][0] > offsets[j - 1][1]), end
                )
                end = word_start
            pieces.append(text[offsets[start][0] : offsets[end - 1][1]].strip())
            start = end
        return [p for p in pieces if p]


@dataclass(frozen=True)
class ChunkOptions:
    max_tokens: int = 200


@dataclass
class _Piece:
    text: str
    kind: ElementKind
    page: int | None
    tokens: int


@dataclass
class _Buffer:
    pieces: list[_Piece] = field(default_factory=list)
    tokens: int = 0

    def only_titles(self) -> bool:
        return all(p.kind == "title" for p in self.pieces)


class DocumentChunker:
    def __init__(self, counter: TokenCounter, options: ChunkOptions | None = None) -> None:
        self.counter = counter
        self.options = options or ChunkOptions()

    def run(self, elements: tuple[Element, ...] | list[Element]) -> list[Chunk]:
        chunks: list[Chunk] = []
        buf = _Buffer()
        section: str | None = None
        limit = self.options.max_tokens

        def flush() -> None:
            nonlocal buf
            if buf.pieces:
                chunks.append(_make_chunk(len(chunks), buf.pieces, section))
            buf = _Buffer()

        for el in elements:
            if el.kind == "title":
                piece = self._piece(el.text, el)
                if not buf.only_titles() or buf.tokens + piece.tokens > limit:
                    flush()
                section = el.text if not buf.pieces else f"{buf.pieces[-1].text} / {el.text}"
                self._add(buf, piece)
                continue
            for piece in self._pieces(el):
                if buf.pieces and buf.tokens + piece.tokens > limit:
                    heading = (
                        [p for p in buf.pieces if p.kind == "title"] if buf.only_titles() else []
                    )
                    flush()
                    for title in heading:  # keep a heading with the first piece under it
                        self._add(buf, title)
                    if heading and buf.tokens + piece.tokens > limit:
                        flush()
                self._add(buf, piece)
        flush()
        return chunks

    def _add(self, buf: _Buffer, piece: _Piece) -> None:
        buf.pieces.append(piece)
        buf.tokens += piece.tokens + (1 if len(buf.pieces) > 1 else 0)

    def _piece(self, text: str, el: Element) -> _Piece:
        return _Piece(text, el.kind, el.page_number, self.counter.count(text))

    def _pieces(self, el: Element) -> list[_Piece]:
        if el.kind == "table" and el.rows:
            return self._table_pieces(el)
        whole = self._piece(el.text, el)
        if whole.tokens <= self.options.max_tokens:
            return [whole]
        return [self._piece(text, el) for text in self._split_text(el.text)]

    def _split_text(self, text: str) -> list[str]:
        """Split at line ends, then sentence ends, then tokens; regroup up to the limit."""
        limit = self.options.max_tokens
        units: list[str] = []
        for line in text.split("\n"):
            for sentence in split_sentences(line):
                if self.counter.count(sentence) <= limit:
                    units.append(sentence)
                else:
                    units.extend(self.counter.cut(sentence, limit))
        groups: list[list[str]] = []
        size = 0
        for unit in units:
            n = self.counter.count(unit)
            if groups and size + n + 1 <= limit:
                groups[-1].append(unit)
                size += n + 1
            else:
                groups.append([unit])
                size = n
        return [join_pieces(g) for g in groups]

    def _table_pieces(self, el: Element) -> list[_Piece]:
        assert el.rows is not None
        lines = [" | ".join(row) for row in el.rows]
        whole = "\n".join(lines)
        tokens = self.counter.count(whole)
        limit = self.options.max_tokens
        if tokens <= limit:
            return [_Piece(whole, "table", el.page_number, tokens)]
        header, header_tokens = lines[0], self.counter.count(lines[0])
        parts: list[_Piece] = []
        rows: list[str] = []
        size = header_tokens
        for line in lines[1:]:
            n = self.counter.count(line) + 1
            if rows and size + n > limit:
                parts.append(_Piece("\n".join([header, *rows]), "table", el.page_number, size))
                rows, size = [], header_tokens
            if header_tokens + n > limit:  # one row alone is too long: cut it
                for cut in self.counter.cut(line, max(1, limit - header_tokens - 1)):
                    parts.append(_Piece(f"{header}\n{cut}", "table", el.page_number, limit))
                continue
            rows.append(line)
            size += n
        if rows:
            parts.append(_Piece("\n".join([header, *rows]), "table", el.page_number, size))
        return parts


def _make_chunk(index: int, pieces: list[_Piece], section: str | None) -> Chunk:
    kinds = tuple(dict.fromkeys(p.kind for p in pieces))
    body = [k for k in kinds if k != "title"]
    kind: ElementKind = "table" if "table" in body else (body[0] if body else "title")
    pages = tuple(sorted({p.page for p in pieces if p.page is not None}))
    return Chunk(
        index=index,
        text="\n".join(p.text for p in pieces),
        kind=kind,
        page_numbers=pages,
        section=section,
        kinds=kinds,
        token_count=sum(p.tokens for p in pieces) + len(pieces) - 1,
    )
