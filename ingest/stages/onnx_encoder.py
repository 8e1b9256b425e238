"""The ONNX (or OpenVINO) encoder: an exported model run without PyTorch, batches side by side
on the cores (one thread each), tokenized by ``tokenizers``, pooled and normalized as the
sentence-transformers pipeline of the model folder says."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ingest.stages.model_files import (
    model_max_tokens,
    normalize,
    pad_token,
    read_pooling,
    sbert_config,
)
from ingest.stages.onnx_export import (
    BackendUnavailable,
    ensure_exported,
    openvino_session,
    ort_session,
)

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxEncoder:
    """Tokenize, run the exported transformer, pool and normalize, as sentence-transformers does."""

    def __init__(self, model_path: str, onnx_file: Path, runtime: str = "onnxruntime",
                 threads: int = 0) -> None:  # fmt: skip
        from tokenizers import Tokenizer

        self.pooling = read_pooling(model_path)
        self.max_seq_length = model_max_tokens(model_path)
        self.do_lower_case = sbert_config(model_path).get("do_lower_case", False)
        self.tokenizer = Tokenizer.from_file(os.path.join(model_path, "tokenizer.json"))
        # the file's own settings (often a fixed padding to 128) are not what the model was used with
        self.tokenizer.enable_truncation(self.max_seq_length)
        pad = pad_token(model_path)
        pad_id = self.tokenizer.token_to_id(pad)
        self.tokenizer.enable_padding(pad_id=pad_id or 0, pad_token=pad)
        self.onnx_file = onnx_file
        if runtime == "openvino":
            self.parallel = 1  # OpenVINO schedules its own threads
            self.session = openvino_session(onnx_file, threads)
        else:
            # Data parallel: a batch per core, each run on one thread. A run split over the
            # cores (intra-op threads) is as fast on an idle machine, but each of its steps waits
            # for the slowest thread: on 2 cores beside a process busy half the time, 66
            # chunks/s against 82 data parallel (88 and 87 with the machine to themselves).
            self.parallel = threads or available_cores()
            self.session = ort_session(onnx_file, 1)
        self._runs = ThreadPoolExecutor(self.parallel, "onnx") if self.parallel > 1 else None

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit vectors, in the order of ``texts``; batches of similar length pad little."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        # a few texts (one small document, a query) still go to every core, in smaller batches
        batch_size = max(1, min(batch_size, -(-len(texts) // self.parallel)))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        # the tokenizer serves one thread at a time: every batch is tokenized here, first
        feeds = [self._feeds([texts[i] for i in idx]) for idx in batches]
        runs = (
            self._runs.map(self._run, feeds)
            if self._runs and len(feeds) > 1
            else map(self._run, feeds)
        )
        out: np.ndarray | None = None
        for idx, vectors in zip(batches, runs, strict=True):
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def _feeds(self, texts: list[str]) -> dict[str, np.ndarray]:
        texts = [t.strip().lower() if self.do_lower_case else t.strip() for t in texts]
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask,
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}  # fmt: skip

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        hidden = self.session.run({n: feeds[n] for n in self.session.input_names})
        return normalize(self.pooling(hidden, feeds["attention_mask"]))


def load_encoder(model_path: str, model_name: str, backend: str, export_root: str,
                 threads: int = 0) -> OnnxEncoder:  # fmt: skip
    """The encoder for an ONNX backend, exporting the model first if needed."""
    read_pooling(model_path)  # refuse an unsupported model before spending time on an export
    if backend == "openvino":
        _require(
            "openvino",
            "embedding_backend \"openvino\" needs OpenVINO (pip install 'shareindex[openvino]')",
        )
    _require(
        "onnxruntime", "the ONNX embedding backends need onnxruntime (pip install onnxruntime)"
    )
    onnx_file = ensure_exported(model_path, export_root, model_name, backend == "onnx-int8")
    runtime = "openvino" if backend == "openvino" else "onnxruntime"
    return OnnxEncoder(model_path, onnx_file, runtime, threads)


def _require(module: str, message: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BackendUnavailable(message)
