"""Faster CPU inference for the embed stage: the model exported once to ONNX, run without PyTorch.

On first use of an ONNX backend the model's transformer is traced to ONNX from the locally
installed model folder (PyTorch and transformers, which the default backend needs anyway; nothing
is downloaded) into ``<data dir>/models/<model>-<variant>/``. For ``onnx-int8`` the graph is first
fused by ONNX Runtime's transformer optimizer, then its matrix products are quantized dynamically
(weights int8 per channel, activations quantized at run time). Every later start loads the files
written then: ONNX Runtime (or OpenVINO), ``tokenizers`` and numpy only, no PyTorch.

An export is built in a temporary folder and renamed into place, so two processes starting at once
never read a half-written model; the loser of the rename uses the winner's files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ingest.stages.model_files import (
    ModelUnavailable,
    Pooling,
    normalize,
    pad_token,
)

log = logging.getLogger(__name__)

#: bump when the export procedure changes: older exports are then rebuilt
EXPORT_FORMAT = 1
MANIFEST = "export.json"
_STALE_TMP_S = 3600
#: the exporter's check: the exported model against PyTorch on inputs other than the traced ones
_MIN_COSINE = {False: 0.999, True: 0.97}


class BackendUnavailable(ModelUnavailable):
    """The configured embedding backend's runtime (onnxruntime, openvino) is not installed."""


# -- where and how ---------------------------------------------------------------------------------


def cpu_isa() -> str:
    """The int8 instruction set of this CPU, as ONNX Runtime's quantization presets name them."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = set(re.findall(r"^flags\s*:(.*)$", fh.read(), re.M)[0].split())
    except (OSError, IndexError):
        return "generic"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "generic"


def export_folder(root: str | os.PathLike[str], model_name: str, quantized: bool) -> Path:
    """``<root>/<model name, path-safe>-onnx[-int8]``; OpenVINO reads the plain ONNX export."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "--", model_name.strip("/")).strip("-.") or "model"
    return Path(root) / f"{safe}-onnx{'-int8' if quantized else ''}"


def _source_stamp(model_path: str) -> list[list[Any]]:
    """What identifies the source weights cheaply: a model replaced in place is exported again."""
    names = sorted(n for n in os.listdir(model_path) if os.path.isfile(os.path.join(model_path, n)))
    return [[n, os.stat(os.path.join(model_path, n)).st_size] for n in names]


def _manifest(model_path: str, quantized: bool) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "source": os.path.abspath(model_path),
        "source_files": _source_stamp(model_path),
        "quantized": quantized,
        # int8 products without VNNI need a reduced range: an export is tied to its CPU family
        "isa": cpu_isa() if quantized else None,
    }


def _current(folder: Path, wanted: dict[str, Any]) -> bool:
    try:
        found = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(found.get("manifest") == wanted and (folder / found["file"]).is_file())


def ensure_exported(model_path: str, root: str | os.PathLike[str], model_name: str,
                    quantized: bool) -> Path:  # fmt: skip
    """The ONNX file for this model and variant, exported now unless a current export exists."""
    folder = export_folder(root, model_name, quantized)
    wanted = _manifest(model_path, quantized)
    if _current(folder, wanted):
        return folder / _read_file_name(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder.parent)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    log.warning("exporting embedding model %s to %s (first use only)", model_name, folder)
    try:
        file_name = _export(model_path, tmp, quantized, wanted["isa"])
        (tmp / MANIFEST).write_text(
            json.dumps({"manifest": wanted, "file": file_name}, indent=2), encoding="utf-8"
        )
        _publish(tmp, folder, wanted)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / _read_file_name(folder)


def _read_file_name(folder: Path) -> str:
    return str(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["file"])


def _publish(tmp: Path, folder: Path, wanted: dict[str, Any]) -> None:
    """Rename the finished export into place; an outdated one is moved aside first."""
    if folder.exists() and not _current(folder, wanted):
        aside = folder.parent / f".tmp-old-{folder.name}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(FileNotFoundError):  # another process moved it already
            folder.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        tmp.rename(folder)
    except OSError:  # another process published first: its export is as good as ours
        if not _current(folder, wanted):
            raise


def _remove_stale_temporaries(parent: Path) -> None:
    """Left by an export that was killed; a live export is far younger than an hour."""
    for entry in parent.glob(".tmp-*"):
        try:
            if time.time() - entry.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


# -- export ----------------------------------------------------------------------------------------


def _export(model_path: str, out: Path, quantized: bool, isa: str | None) -> str:
    """Trace, (fuse and quantize), then check against PyTorch; returns the ONNX file name."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise BackendUnavailable(
            f"exporting the embedding model to ONNX needs torch and transformers: {exc}"
        ) from exc
    out.mkdir(parents=True)
    try:
        # eager attention traces to plain ONNX operators that every runtime reads
        model = AutoModel.from_pretrained(model_path, attn_implementation="eager").eval()
    except Exception as exc:
        raise ModelUnavailable(f"cannot load {model_path!r} for the ONNX export: {exc}") from exc
    names = _input_names(model)
    plain = out / "model.onnx"
    with torch.inference_mode():
        _trace(model, names, plain)
    final = plain
    if quantized:
        final = _quantize(
            plain, out, model.config, reduce_range=isa in ("avx2", "avx512", "generic")
        )
        plain.unlink()
    _check_against_torch(model, model_path, names, final, _MIN_COSINE[quantized])
    return final.name


def _input_names(model: Any) -> list[str]:
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]


def _wrapped(model: Any, names: list[str]) -> Any:
    """Named inputs to the model, its last hidden state out (what the pooling reads)."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            return self.model(**dict(zip(names, args, strict=True))).last_hidden_state

    # eval: a module is built in training mode, and the exporter restores that mode after the
    # trace, which would switch the model's dropout on for the check that follows
    return Wrapped().eval()


def _dummy_inputs(names: list[str], batch: int, length: int, vocab: int) -> dict[str, Any]:
    """Token ids with the last row padded, so the traced graph keeps the attention-mask path."""
    import torch

    ids = torch.randint(
        5, min(vocab, 1000), (batch, length), generator=torch.Generator().manual_seed(0)
    )
    mask = torch.ones_like(ids)
    mask[-1, length // 2 :] = 0
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {n: values[n] for n in names}


def _trace(model: Any, names: list[str], path: Path) -> None:
    import warnings

    import torch

    inputs = _dummy_inputs(names, 2, 16, model.config.vocab_size)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings():  # the tracer's notes on Python branches it fixed
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _wrapped(model, names), tuple(inputs.values()), str(path), dynamo=False,
            input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
            opset_version=17,
        )  # fmt: skip


def _quantize(plain: Path, out: Path, config: Any, reduce_range: bool) -> Path:
    """Fuse attention, layer norms and GELU (int8 products break the run-time fusions), then
    quantize the matrix products; embeddings and norms stay in float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = plain
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        fused = optimize_model(
            str(plain), model_type="bert", num_heads=getattr(config, "num_attention_heads", 0),
            hidden_size=getattr(config, "hidden_size", 0), opt_level=1,
        )  # fmt: skip
        source = out / "model_fused.onnx"
        fused.save_model_to_file(str(source))
    except Exception as exc:  # an architecture the optimizer does not know: quantize unfused
        log.info("ONNX fusion skipped: %s", exc)
    target = out / "model_int8.onnx"
    with _quiet_root_warning("Please consider to run pre-processing"):
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
            reduce_range=reduce_range, op_types_to_quantize=["MatMul", "Attention"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )  # fmt: skip
    if source != plain:
        source.unlink()
    return target


_CHECK_TEXTS = [
    "The cooling water pump was inspected after the night shift reported a vibration alarm.",
    "Invoice 4471: replacement seals, delivered to warehouse B.",
    "Quality audit of the welding line: two defects found in lot 18, rework approved by the "
    "supervisor, calibration of the gauges scheduled before the next production run.",
]


@contextlib.contextmanager
def _quiet_root_warning(prefix: str) -> Iterator[None]:
    """ONNX Runtime's quantizer advises on the root logger, into the service's log."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _check_against_torch(
    model: Any, model_path: str, names: list[str], path: Path, min_cosine: float
) -> None:
    """Real sentences, another batch size and lengths than the trace's: a shape fixed by tracing,
    or a quantization that went wrong, shows up here."""
    import torch
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(model_path, "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad_token(model_path)) or 0)
    encodings = tokenizer.encode_batch(_CHECK_TEXTS)
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    feeds = {n: feeds[n] for n in names}
    with torch.inference_mode():
        expected = model(**{n: torch.from_numpy(v) for n, v in feeds.items()}).last_hidden_state
    got = ort_session(path, threads=0).run(feeds)
    pool, mask = Pooling(), feeds["attention_mask"]
    a, b = normalize(pool(expected.numpy(), mask)), normalize(pool(got, mask))
    worst = float((a * b).sum(axis=1).min())
    if worst < min_cosine:
        raise ModelUnavailable(
            f"the ONNX export of {model_path!r} disagrees with PyTorch (cosine {worst:.3f}"
            f' < {min_cosine}): use embedding_backend = "torch" for this model'
        )


# -- inference -------------------------------------------------------------------------------------


# -- opening an export -------------------------------------------------------------------------


class _Session(Protocol):
    input_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


class _OrtSession:
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self._session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)


class _OpenVinoSession:
    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._model = ov.Core().compile_model(str(path), "CPU", config)
        self.input_names = [port.any_name for port in self._model.inputs]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._model(feeds)[self._model.output(0)], dtype=np.float32)


def ort_session(path: Path, threads: int) -> _Session:
    try:
        return _OrtSession(path, threads)
    except ImportError as exc:
        raise BackendUnavailable(
            "the ONNX embedding backends need onnxruntime (pip install onnxruntime)"
        ) from exc


def openvino_session(path: Path, threads: int) -> _Session:
    try:
        return _OpenVinoSession(path, threads)
    except ImportError as exc:
        raise BackendUnavailable(
            "embedding_backend \"openvino\" needs OpenVINO (pip install 'shareindex[openvino]')"
        ) from exc
