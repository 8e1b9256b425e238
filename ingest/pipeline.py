"""The order of the stages: parse -> chunk (per document, CPU) and embed (across documents).

``prepare`` runs wherever parsing runs (a parse process here, a cpu-queue worker later);
``embed`` takes chunks of many documents at once so that batches stay full.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ingest.models import EmbeddedChunk, PreparedDocument, SourceFile, SparseVector
from ingest.stages.chunk import DocumentChunker
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.parse import ParseOptions, parse
from ingest.stages.sparse import SparseEncoder


def prepare(
    source: SourceFile, options: ParseOptions, chunker: DocumentChunker
) -> PreparedDocument:
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


def embed(
    docs: Sequence[PreparedDocument],
    embedder: SentenceEmbedder,
    sparse: SparseEncoder,
    reuse: ReuseLookup | None = None,
) -> list[list[EmbeddedChunk]]:
    """Embed the chunks of several documents in one pass; reuse stored vectors of equal text."""
    hashes = [[text_hash(c.text) for c in doc.chunks] for doc in docs]
    known = [reuse(doc) if reuse else {} for doc in docs]
    todo: dict[str, str] = {}
    for doc, doc_hashes, doc_known in zip(docs, hashes, known, strict=True):
        for chunk, h in zip(doc.chunks, doc_hashes, strict=True):
            if h not in doc_known:
                todo.setdefault(h, chunk.text)
    vectors = dict(zip(todo, embedder.embed_documents(list(todo.values())), strict=True))
    out: list[list[EmbeddedChunk]] = []
    for doc, doc_hashes, doc_known in zip(docs, hashes, known, strict=True):
        embedded = []
        for chunk, h in zip(doc.chunks, doc_hashes, strict=True):
            if h in doc_known:
                stored = doc_known[h]
                embedded.append(EmbeddedChunk(chunk, stored.dense, stored.sparse, h, reused=True))
            else:
                dense = tuple(float(x) for x in vectors[h])
                embedded.append(EmbeddedChunk(chunk, dense, sparse.encode_document(chunk.text), h))
        out.append(embedded)
    return out
