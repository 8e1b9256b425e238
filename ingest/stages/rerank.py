"""Optional re-ranking stage: a sentence-transformers cross-encoder scores (query, passage) pairs.

Off unless configured. Retrieval (dense + sparse) finds candidates cheaply; the cross-encoder reads
each candidate with the query and orders them better. Loaded once (``warm_up``), offline only.
"""

from __future__ import annotations

import threading
from typing import Any

from ingest.stages.model_files import ModelUnavailable, resolve_model_path


class CrossEncoderReranker:
    def __init__(self, model: str, device: str = "cpu", batch_size: int = 16) -> None:
        self.model_name = model
        self.model_path = resolve_model_path(model)
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        try:
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(self.model_path, device=self.device, local_files_only=True)
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot load re-ranking model {self.model_name!r} offline: {exc}"
            ) from exc

    def scores(self, query: str, passages: list[str]) -> list[float]:
        self.warm_up()
        if not passages:
            return []
        with self._lock:
            out = self._model.predict(
                [(query, p) for p in passages], batch_size=self.batch_size, show_progress_bar=False
            )
        return [float(x) for x in out]
