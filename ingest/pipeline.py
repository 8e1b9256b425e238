"""The order of the stages: parse (with OCR) -> chunk (per document, CPU), embed (across
documents), and captions for the figures (VLM, after the text).

``prepare`` runs wherever parsing runs (a parse process here, a cpu-queue worker later);
``embed`` takes chunks of many documents at once so that batches stay full, reusing the
vectors a previous version already has for the same text (``plan_embedding`` decides, the model
runs, ``EmbeddingPlan.assemble`` puts them back). The figures' captions come after the text is
indexed and never block it: ``ingest.captions``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ingest.models import EmbeddedChunk, PreparedDocument, SourceFile, SparseVector
from ingest.stages.chunk import DocumentChunker
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.members import is_container, prepare_container
from ingest.stages.parse import ParseOptions, parse
from ingest.stages.sparse import SparseEncoder

log = logging.getLogger(__name__)


def prepare(
    source: SourceFile, options: ParseOptions, chunker: DocumentChunker
) -> PreparedDocument:
    if is_container(source.path):  # a message or an archive: its members come along
        return prepare_container(source, options, chunker)
    if source.part >= 0:  # one part of a large text file
        from ingest.stages.parts import prepare_part

        return prepare_part(source, options, chunker)
    parsed = parse(source, options)
    return PreparedDocument(
        source=source, parsed=parsed, chunks=tuple(chunker.run(parsed.elements))
    )


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class StoredVectors:
    dense: tuple[float, ...]
    sparse: SparseVector


#: text hash -> vectors already in the index (a previous version of the same document)
ReuseLookup = Callable[[PreparedDocument], Mapping[str, StoredVectors]]


@dataclass
class EmbeddingPlan:
    """What a set of documents needs from the model: each distinct new text once; the texts a
    previous version already has vectors for are reused. ``assemble`` puts the model's vectors
    back in document order (the model runs in between, possibly on another thread)."""

    docs: Sequence[PreparedDocument]
    hashes: list[list[str]]
    known: list[Mapping[str, StoredVectors]]
    #: text hash -> text, for the texts the model must embed
    todo: dict[str, str]

    @property
    def texts(self) -> list[str]:
        return list(self.todo.values())

    def assemble(self, vectors: np.ndarray, sparse: SparseEncoder) -> list[list[EmbeddedChunk]]:
        by_hash = dict(zip(self.todo, vectors, strict=True))
        out: list[list[EmbeddedChunk]] = []
        for doc, doc_hashes, doc_known in zip(self.docs, self.hashes, self.known, strict=True):
            embedded = []
            for chunk, h in zip(doc.chunks, doc_hashes, strict=True):
                if h in doc_known:
                    stored = doc_known[h]
                    embedded.append(
                        EmbeddedChunk(chunk, stored.dense, stored.sparse, h, reused=True)
                    )
                else:
                    dense = tuple(np.asarray(by_hash[h], dtype=np.float32).tolist())
                    embedded.append(
                        EmbeddedChunk(chunk, dense, sparse.encode_document(chunk.text), h)
                    )
            out.append(embedded)
        return out


def plan_embedding(
    docs: Sequence[PreparedDocument], reuse: ReuseLookup | None = None
) -> EmbeddingPlan:
    hashes = [[text_hash(c.text) for c in doc.chunks] for doc in docs]
    known = [reuse(doc) if reuse else {} for doc in docs]
    todo: dict[str, str] = {}
    for doc, doc_hashes, doc_known in zip(docs, hashes, known, strict=True):
        for chunk, h in zip(doc.chunks, doc_hashes, strict=True):
            if h not in doc_known:
                todo.setdefault(h, chunk.text)
    return EmbeddingPlan(docs, hashes, known, todo)


def embed(
    docs: Sequence[PreparedDocument],
    embedder: SentenceEmbedder,
    sparse: SparseEncoder,
    reuse: ReuseLookup | None = None,
) -> list[list[EmbeddedChunk]]:
    """Embed the chunks of several documents in one pass; reuse stored vectors of equal text."""
    plan = plan_embedding(docs, reuse)
    return plan.assemble(embedder.embed_documents(plan.texts), sparse)
