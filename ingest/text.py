"""Language-aware text helpers shared by the chunker and the offline NLP fallback."""

from __future__ import annotations

import re

# CJK ideographs, kana, hangul and the CJK punctuation block.
_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
CJK_CHAR = re.compile(f"[{_CJK}]")

# A sentence ends at 。！？ (no space follows in Japanese), or at . ! ? followed by white space.
_SENTENCE_END = re.compile(r"(?<=[。！？!?])(?=\S)(?=[^」』）)\]\"'])|(?<=[.!?。！？」』])\s+")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def normalize_space(text: str) -> str:
    """Fold runs of blanks, keep line breaks (they carry structure in tables and lists)."""
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def split_sentences(text: str) -> list[str]:
    """Split English and Japanese text into sentences; never loses a character but spaces."""
    parts = _SENTENCE_END.split(text)
    return [p.strip() for p in parts if p and p.strip()]


def is_cjk(text: str, threshold: float = 0.3) -> bool:
    """True when at least ``threshold`` of the non-space characters are CJK."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return False
    return sum(1 for c in chars if CJK_CHAR.match(c)) / len(chars) >= threshold


def join_pieces(pieces: list[str]) -> str:
    """Join sentences or elements: no space between CJK pieces, a space or newline otherwise."""
    out = ""
    for piece in pieces:
        if not out:
            out = piece
        elif CJK_CHAR.match(out[-1]) and CJK_CHAR.match(piece[0]):
            out += piece
        else:
            out += " " + piece
    return out
