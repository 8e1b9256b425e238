"""Search: a query and a principal in, the chunks that principal may read out."""

from __future__ import annotations

from index.acl import Principal
from index.store import Hit, QdrantIndex, SearchMode
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.sparse import SparseEncoder


class Searcher:
    def __init__(
        self, store: QdrantIndex, embedder: SentenceEmbedder, sparse: SparseEncoder | None = None
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.sparse = sparse or SparseEncoder()

    def search(
        self, query: str, principal: Principal, k: int = 10, mode: SearchMode = "hybrid"
    ) -> list[Hit]:
        dense = self.embedder.embed_query(query)
        return self.store.search(
            principal, dense.tolist(), self.sparse.encode_query(query), k=k, mode=mode
        )
