"""Sparse (BM25-style) vectors: term frequencies with saturation; Qdrant's IDF modifier adds IDF.

Term ids are hashes of the terms, so no vocabulary is shared between processes. English words are
lower-cased with stop words dropped. CJK runs become character bigrams by default, which match
Japanese without a morphological analyser; ``tokenizer="sudachi"`` splits them into words with
Sudachi instead (normalised forms, particles and auxiliaries dropped), when it is installed.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Callable

from ingest.models import SparseVector
from ingest.text import CJK_CHAR

TOKENIZERS = ("bigram", "sudachi")

_TOKEN = re.compile(
    r"[0-9a-z][0-9a-z_\-.]*[0-9a-z]|[0-9a-z]|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
)
_STOP = frozenset(
    "a an and are as at be but by for from has have he her his i if in into is it its of on or "
    "our she so that the their them then there these they this to was we were what when which "
    "who will with you your".split()
)


def bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(max(1, len(run) - 1))]


def terms(text: str, cjk: Callable[[str], list[str]] = bigrams) -> list[str]:
    out: list[str] = []
    for tok in _TOKEN.findall(text.lower()):
        if CJK_CHAR.match(tok):
            out.extend(cjk(tok))
        elif tok not in _STOP:
            out.append(tok)
    return out


class SparseTokenizerUnavailable(Exception):
    """The configured sparse tokenizer cannot be loaded."""


# Parts of speech that carry no content: particles, auxiliary verbs, symbols, blanks.
_SUDACHI_SKIP = ("助詞", "助動詞", "補助記号", "空白", "記号")


def sudachi_words() -> Callable[[str], list[str]]:
    """Japanese words by Sudachi (split mode C, normalised forms), for CJK runs."""
    try:
        from sudachipy import Dictionary, SplitMode
    except ImportError as exc:
        raise SparseTokenizerUnavailable(
            "sparse tokenizer 'sudachi' needs SudachiPy and a dictionary: pip install 'shareindex[ja]'"
            " (sudachipy sudachidict_core)"
        ) from exc
    tokenizer = Dictionary(dict="core").tokenizer()

    def words(run: str) -> list[str]:
        return [
            m.normalized_form()
            for m in tokenizer.tokenize(run, SplitMode.C)
            if m.part_of_speech()[0] not in _SUDACHI_SKIP
        ]

    return words


def term_id(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


class SparseEncoder:
    def __init__(
        self, tokenizer: str = "bigram", k1: float = 1.2, b: float = 0.75, avg_len: float = 120.0
    ) -> None:
        if tokenizer not in TOKENIZERS:
            raise SparseTokenizerUnavailable(
                f"unknown sparse tokenizer {tokenizer!r}: use one of {', '.join(TOKENIZERS)}"
            )
        self.tokenizer = tokenizer
        self._cjk = sudachi_words() if tokenizer == "sudachi" else bigrams
        self.k1, self.b, self.avg_len = k1, b, avg_len

    def terms(self, text: str) -> list[str]:
        return terms(text, self._cjk)

    def encode_document(self, text: str) -> SparseVector:
        counts = Counter(term_id(t) for t in self.terms(text))
        length = sum(counts.values())
        norm = self.k1 * (1 - self.b + self.b * length / self.avg_len)
        items = sorted((tid, tf * (self.k1 + 1) / (tf + norm)) for tid, tf in counts.items())
        return SparseVector(tuple(i for i, _ in items), tuple(v for _, v in items))

    def encode_query(self, text: str) -> SparseVector:
        ids = sorted({term_id(t) for t in self.terms(text)})
        return SparseVector(tuple(ids), tuple(1.0 for _ in ids))
