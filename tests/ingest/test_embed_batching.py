"""Chunks of many documents are embedded together, in batches sorted by length: every chunk must
still get the vector of its own text."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest

from ingest.models import Chunk, ParsedDocument, PreparedDocument, SourceFile
from ingest.pipeline import StoredVectors, embed, text_hash
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.sparse import SparseEncoder

_WORDS = (
    "pump seal valve bearing invoice audit weld permit supplier forklift pallet budget sensor "
    "alarm shift operator gauge torque inspection warranty shipment calibration defect rework"
).split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def _document(name: str, texts: list[str]) -> PreparedDocument:
    source = SourceFile("s", "/share", name, 1, 1)
    parsed = ParsedDocument("h-" + name, 1, 1, (), "text/plain")
    chunks = tuple(Chunk(i, t, "text") for i, t in enumerate(texts))
    return PreparedDocument(source, parsed, chunks)


def _documents() -> list[PreparedDocument]:
    """Five documents whose chunks range from 2 to ~250 words, long and short interleaved."""
    rng = random.Random(7)
    docs = []
    for d in range(5):
        lengths = [rng.choice([2, 5, 30, 120, 250]) for _ in range(rng.randint(3, 8))]
        docs.append(_document(f"doc{d}.txt", [_text(rng, n) for n in lengths]))
    shared = "Shared boilerplate: confidential, do not distribute."
    docs[1] = _document("doc1.txt", [*(c.text for c in docs[1].chunks), shared])
    docs[3] = _document("doc3.txt", [shared, *(c.text for c in docs[3].chunks)])
    return docs


@pytest.fixture(scope="module")
def int8(tmp_path_factory: pytest.TempPathFactory) -> SentenceEmbedder:
    # one export per test session, whichever test module comes first
    export_dir = tmp_path_factory.getbasetemp() / "embed-models"
    emb = SentenceEmbedder(backend="onnx-int8", export_dir=str(export_dir))
    emb.warm_up()
    return emb


@pytest.fixture(params=["torch", "onnx-int8"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[SentenceEmbedder, float]]:
    """The embedder, and how close a vector must be to the same text embedded alone (int8
    quantizes activations per batch, so a batch's other texts move a vector a little)."""
    if request.param == "torch":
        yield request.getfixturevalue("embedder"), 0.9999
    else:
        yield request.getfixturevalue("int8"), 0.98


def test_each_chunk_gets_its_own_vector(
    backend: tuple[SentenceEmbedder, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder, min_cosine = backend
    monkeypatch.setattr(embedder, "slice_size", 8)  # several slices, batches across documents
    calls: list[list[str]] = []
    encode = embedder._encode

    def spy(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return encode(texts)

    monkeypatch.setattr(embedder, "_encode", spy)
    docs = _documents()
    results = embed(docs, embedder, SparseEncoder())

    distinct = list(dict.fromkeys(c.text for d in docs for c in d.chunks))
    alone = np.stack([encode([t])[0] for t in distinct])
    for doc, embedded in zip(docs, results, strict=True):
        assert [e.chunk for e in embedded] == list(doc.chunks)
        for e in embedded:
            vector = np.asarray(e.dense)
            similarity = alone @ vector
            own = distinct.index(e.chunk.text)
            assert similarity[own] > min_cosine, (e.chunk.text[:40], similarity[own])
            assert int(np.argmax(similarity)) == own  # no neighbour's vector

    # each distinct text embedded once, shortest first, in batches that mix documents
    sent = [t for call in calls for t in call]
    assert sorted(sent) == sorted(distinct)
    assert [len(t) for t in sent] == sorted(len(t) for t in sent)
    owners = {c.text: d.source.path for d in docs for c in d.chunks}
    assert len(calls) > 1
    assert any(len({owners[t] for t in call}) > 1 for call in calls)


def test_stored_vectors_are_reused_and_not_embedded(
    embedder: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _documents()
    kept = "Unchanged paragraph, already in the index from the previous version."
    docs[2] = _document("doc2.txt", [kept, *(c.text for c in docs[2].chunks)])
    stored = StoredVectors(tuple([0.5] * embedder.dimension), SparseEncoder().encode_document(""))
    sent: list[str] = []
    encode = embedder._encode

    def spy(texts: list[str]) -> np.ndarray:
        sent.extend(texts)
        return encode(texts)

    monkeypatch.setattr(embedder, "_encode", spy)

    def reuse(doc: PreparedDocument) -> dict[str, StoredVectors]:
        return {text_hash(kept): stored} if doc is docs[2] else {}

    results = embed(docs, embedder, SparseEncoder(), reuse)
    assert results[2][0].reused and results[2][0].dense == stored.dense
    assert kept not in sent
    assert len(sent) == len({c.text for d in docs for c in d.chunks}) - 1
