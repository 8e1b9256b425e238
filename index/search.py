"""Search: a query and a principal in, the chunks that principal may read out.

Retrieval is hybrid by default (dense and sparse prefetches fused by reciprocal rank, the ACL
filter inside each prefetch); an optional cross-encoder re-ranks the candidates; on request each
hit comes with its neighbouring chunks, read under the same ACL and from the same version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from index.permissions.readers import Principal
from index.vectors import Hit, SearchMode, VectorIndex
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.rerank import CrossEncoderReranker
from ingest.stages.sparse import SparseEncoder


class Searcher:
    def __init__(
        self,
        store: VectorIndex,
        embedder: SentenceEmbedder,
        sparse: SparseEncoder | None = None,
        reranker: CrossEncoderReranker | None = None,
        rerank_candidates: int = 30,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.sparse = sparse or SparseEncoder()
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates

    def search(
        self,
        query: str,
        principal: Principal,
        k: int = 10,
        mode: SearchMode = "hybrid",
        context: int = 0,
        shares: Sequence[str] = (),
    ) -> list[Hit]:
        dense = self.embedder.embed_query(query)
        limit = max(k, self.rerank_candidates) if self.reranker else k
        hits = self.store.search(
            principal, dense.tolist(), self.sparse.encode_query(query), k=limit, mode=mode,
            shares=shares,
        )  # fmt: skip
        if self.reranker and hits:
            scores = self.reranker.scores(query, [h.page_content for h in hits])
            ranked = sorted(zip(scores, range(len(hits)), hits, strict=True), reverse=True)
            hits = [replace(h, score=score) for score, _, h in ranked]
        # equal scores (fusion gives many) in the file's order: the same question, the same list
        hits = sorted(hits[:k], key=_rank)
        return [self._with_context(h, principal, context) for h in hits] if context else hits

    def _with_context(self, hit: Hit, principal: Principal, n: int) -> Hit:
        meta = hit.metadata
        i = int(meta["chunk_index"])
        around = self.store.document_chunks(
            meta["doc_id"],
            principal,
            list(range(max(0, i - n), i + n + 1)),
            version=int(meta["version"]),
        )
        before = [c for c in around if c.metadata["chunk_index"] < i]
        after = [c for c in around if c.metadata["chunk_index"] > i]
        return replace(
            hit,
            context={
                "section": meta.get("section"),
                "before": [
                    {"chunk_index": c.metadata["chunk_index"], "page_content": c.page_content}
                    for c in before
                ],
                "after": [
                    {"chunk_index": c.metadata["chunk_index"], "page_content": c.page_content}
                    for c in after
                ],
            },
        )


def _rank(hit: Hit) -> tuple[float, str, int]:
    meta = hit.metadata
    return (-hit.score, str(meta.get("path", "")), int(meta.get("chunk_index", 0)))

