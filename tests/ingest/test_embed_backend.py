"""The ONNX backends: same vectors as PyTorch, exported once, safe to export concurrently, no torch
at run time, and clear errors when a runtime or a model is not supported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from ingest.stages import onnx_encoder, onnx_export
from ingest.stages.embed import SentenceEmbedder
from ingest.stages.model_files import ModelUnavailable, Pooling, model_dimension, read_pooling
from ingest.stages.onnx_export import BackendUnavailable, ensure_exported, export_folder
from tests.helpers import run_together

REPO = Path(__file__).resolve().parents[2]
EVAL_DOCS = REPO / "tests/data/eval/docs"


def chunk_sample() -> list[str]:
    """Chunk-sized English texts of the evaluation documents (the model is an English one)."""
    texts = []
    for path in sorted(EVAL_DOCS.rglob("*")):
        if path.is_file() and "ja" not in path.relative_to(EVAL_DOCS).parts:
            text = path.read_text(encoding="utf-8")
            texts += [text[i : i + 1000] for i in range(0, len(text), 800)]
    return [t for t in texts if len(t) > 40]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    # one export per test session, whichever test module comes first
    return str(tmp_path_factory.getbasetemp() / "embed-models")


@pytest.fixture(scope="module")
def int8(export_dir: str) -> SentenceEmbedder:
    emb = SentenceEmbedder(backend="onnx-int8", export_dir=export_dir)
    emb.warm_up()
    return emb


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


def test_int8_vectors_agree_with_torch(embedder: SentenceEmbedder, int8: SentenceEmbedder) -> None:
    texts = chunk_sample()
    assert len(texts) >= 20
    cos = _cosines(embedder.embed_documents(texts), int8.embed_documents(texts))
    assert cos.min() > 0.98, f"min cosine {cos.min():.4f}"
    query = "Who approves a hot work permit?"
    assert float(embedder.embed_query(query) @ int8.embed_query(query)) > 0.98


def test_fp32_onnx_vectors_equal_torch(embedder: SentenceEmbedder, export_dir: str) -> None:
    onnx = SentenceEmbedder(backend="onnx", export_dir=export_dir)
    texts = chunk_sample()[:12]
    assert _cosines(embedder.embed_documents(texts), onnx.embed_documents(texts)).min() > 0.9999


def test_data_parallel_runs_give_each_text_the_vectors_of_a_single_thread(
    export_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches run side by side on several threads; every text still gets its own vector, the
    same as when the batches run one after the other."""
    from ingest.stages.model_files import resolve_model_path

    int8 = SentenceEmbedder(backend="onnx-int8", export_dir=export_dir)
    int8.warm_up()
    model_path, onnx_file = resolve_model_path(int8.model_name), int8.model.onnx_file
    texts = [t[: 40 + 97 * i % 900] for i, t in enumerate(chunk_sample()[:30])]  # mixed lengths
    one = onnx_encoder.OnnxEncoder(model_path, onnx_file, threads=1)
    three = onnx_encoder.OnnxEncoder(model_path, onnx_file, threads=3)
    assert (one.parallel, three.parallel) == (1, 3)
    threads: set[str] = set()
    run = three._run

    def spy(feeds: dict[str, np.ndarray]) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return run(feeds)

    monkeypatch.setattr(three, "_run", spy)
    expected, got = one.encode(texts, 4), three.encode(texts, 4)
    assert len(threads) > 1  # the batches did run side by side
    assert np.abs(expected - got).max() < 1e-5
    assert _cosines(expected, got).min() > 0.9999

    # a few texts (one small document) are split into smaller batches so every core works;
    # int8 quantizes per batch, so the vectors move a little, never to another text's
    threads.clear()
    few = texts[:5]
    alone, split = one.encode(few, 16), three.encode(few, 16)
    assert len(threads) > 1
    assert _cosines(alone, split).min() > 0.98
    assert (np.argmax(split @ alone.T, axis=1) == np.arange(len(few))).all()


def test_export_is_written_once_then_loaded(
    int8: SentenceEmbedder, export_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = export_folder(export_dir, int8.model_name, quantized=True)
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["manifest"]["quantized"] and (folder / manifest["file"]).is_file()

    def no_export(*args: object) -> str:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    again = SentenceEmbedder(backend="onnx-int8", export_dir=export_dir)
    text = "Torque check of the conveyor motor bearings."
    assert float(again.embed_query(text) @ int8.embed_query(text)) > 0.9999


def test_a_second_process_runs_the_export_without_torch(
    int8: SentenceEmbedder, export_dir: str
) -> None:
    code = textwrap.dedent(f"""
        import sys
        from ingest.stages.embed import SentenceEmbedder
        emb = SentenceEmbedder(backend="onnx-int8", export_dir={export_dir!r})
        vectors = emb.embed_documents(["pump seal", "welding permit for the hot work area"])
        assert vectors.shape == (2, 384), vectors.shape
        loaded = sorted(m for m in ("torch", "sentence_transformers", "transformers")
                        if m in sys.modules)
        print(",".join(loaded) or "none")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none"


def test_embedder_gives_name_dimension_and_limit_without_torch() -> None:
    """What a re-sync with nothing to embed asks of the embedder must not load PyTorch."""
    code = textwrap.dedent("""
        import sys
        from ingest.stages.embed import SentenceEmbedder
        emb = SentenceEmbedder()
        facts = (emb.model_name, emb.dimension, emb.max_seq_length,
                 emb.embed_documents([]).shape)
        assert "torch" not in sys.modules and "sentence_transformers" not in sys.modules, facts
        print(facts)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('sentence-transformers/all-MiniLM-L6-v2', 384, 256, (0, 384))"


def _fake_export(model_path: str, out: Path, quantized: bool, isa: str | None) -> str:
    import time

    out.mkdir(parents=True)
    time.sleep(0.2)  # both exports are in flight at once
    (out / "model.onnx").write_bytes(b"x" * 1000)
    return "model.onnx"


def test_concurrent_first_uses_publish_one_complete_export(
    tmp_path: Path, model_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "_export", _fake_export)
    results: list[Path] = []

    def first_use() -> None:
        results.append(ensure_exported(model_path, tmp_path, "m", quantized=False))

    assert not run_together(first_use, 4)
    assert {str(p) for p in results} == {str(tmp_path / "m-onnx" / "model.onnx")}
    assert (tmp_path / "m-onnx" / "model.onnx").stat().st_size == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-onnx"]  # no temporary left


def test_an_export_of_other_weights_is_replaced(
    tmp_path: Path, model_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "_export", _fake_export)
    folder = ensure_exported(model_path, tmp_path, "m", quantized=True).parent
    manifest = json.loads((folder / "export.json").read_text())
    manifest["manifest"]["source_files"][0][1] += 1  # as if the model folder had changed
    (folder / "export.json").write_text(json.dumps(manifest))
    calls: list[str] = []

    def counted(*args: object) -> str:
        calls.append("export")
        return _fake_export(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_export, "_export", counted)
    ensure_exported(model_path, tmp_path, "m", quantized=True)
    assert calls == ["export"]
    ensure_exported(model_path, tmp_path, "m", quantized=True)
    assert calls == ["export"]


def test_missing_runtime_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("onnxruntime", "openvino") else real(name, *a),
    )
    for backend, hint in (("onnx-int8", "pip install onnxruntime"), ("openvino", "[openvino]")):
        emb = SentenceEmbedder(backend=backend, export_dir=str(tmp_path))
        with pytest.raises(BackendUnavailable, match=hint.replace("[", r"\[")):
            emb.warm_up()
    assert not list(tmp_path.iterdir())  # nothing exported


def test_onnx_backends_run_on_the_cpu_only() -> None:
    with pytest.raises(ValueError, match="runs on the CPU"):
        SentenceEmbedder(backend="onnx", device="cuda", export_dir="/tmp")
    with pytest.raises(ValueError, match="folder"):
        SentenceEmbedder(backend="onnx-int8")
    with pytest.raises(ValueError, match="one of"):
        SentenceEmbedder(backend="tensorrt")


def test_settings_choose_the_backend_and_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.components import make_embedder
    from workers.settings import ConfigError, load_settings

    monkeypatch.delenv("SHAREINDEX_MODEL_DIR", raising=False)
    emb = make_embedder(load_settings(data_dir=tmp_path, embedding_backend="onnx-int8"))
    assert (emb.backend, emb.export_dir) == ("onnx-int8", str(tmp_path / "models"))
    assert not emb.fallback  # named: an export that cannot run is an error, not a fallback
    elsewhere = make_embedder(load_settings(data_dir=tmp_path, model_dir=tmp_path / "m"))
    assert (elsewhere.backend, elsewhere.export_dir) == ("onnx-int8", str(tmp_path / "m"))
    # the default: int8 on the CPU (falling back to torch where it cannot run), torch on a GPU
    auto = make_embedder(load_settings(data_dir=tmp_path))
    assert (auto.backend, auto.fallback) == ("onnx-int8", True)
    cuda = make_embedder(load_settings(data_dir=tmp_path, embedding_device="cuda"))
    assert cuda.backend == "torch"
    with pytest.raises(ConfigError, match="CPU"):
        make_embedder(
            load_settings(data_dir=tmp_path, embedding_backend="onnx", embedding_device="cuda")
        )


def _model_folder(root: Path, modules: list[tuple[str, str, dict[str, object]]]) -> str:
    entries = []
    for i, (kind, path, config) in enumerate(modules):
        entries.append({"idx": i, "name": str(i), "path": path, "type": f"st.models.{kind}"})
        (root / path).mkdir(parents=True, exist_ok=True)
        (root / path / "config.json").write_text(json.dumps(config))
    (root / "modules.json").write_text(json.dumps(entries))
    return str(root)


def test_models_the_onnx_backends_cannot_run_are_refused(tmp_path: Path) -> None:
    pooling: dict[str, object] = {"word_embedding_dimension": 768, "pooling_mode_mean_tokens": True}
    dense = _model_folder(tmp_path / "dense", [
        ("Transformer", "", {"hidden_size": 768}), ("Pooling", "1_Pooling", pooling),
        ("Dense", "2_Dense", {"in_features": 768, "out_features": 256}),
    ])  # fmt: skip
    with pytest.raises(ModelUnavailable, match="Dense"):
        read_pooling(dense)
    assert model_dimension(dense) == 256
    weighted = _model_folder(tmp_path / "weighted", [
        ("Transformer", "", {}), ("Pooling", "1_Pooling",
         {"word_embedding_dimension": 384, "pooling_mode_weightedmean_tokens": True}),
    ])  # fmt: skip
    with pytest.raises(ModelUnavailable, match="weightedmean"):
        read_pooling(weighted)


def test_pooling_modes_follow_sentence_transformers() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])  # the last position is padding and must not count
    assert Pooling()(hidden, mask).tolist() == [[2.0, 4.0]]
    both = Pooling(cls_token=True, max_tokens=True, mean_tokens=True)(hidden, mask)
    assert both.tolist() == [[1.0, 2.0, 3.0, 6.0, 2.0, 4.0]]


class _FakeCudaModel:
    """Stands in for a SentenceTransformer on a GPU (none on the test machines)."""

    max_seq_length = 256

    def __init__(self, path: str, device: str, local_files_only: bool) -> None:
        self.device, self.halved = device, False

    def half(self) -> _FakeCudaModel:
        self.halved = True
        return self

    def encode(self, texts: list[str], batch_size: int, **kwargs: object) -> np.ndarray:
        self.batch_size = batch_size
        return np.ones((len(texts), 384), dtype=np.float16 if self.halved else np.float32)


def test_cuda_runs_in_half_precision_with_large_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentence_transformers

    from workers.components import make_embedder
    from workers.settings import load_settings

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _FakeCudaModel)
    emb = make_embedder(load_settings(data_dir=tmp_path, embedding_device="cuda"))
    vectors = emb.embed_documents(["a", "b"])
    assert emb.model.halved and emb.model.batch_size == 256
    assert vectors.dtype == np.float32  # what the index stores, whatever the GPU computed in
    cpu = make_embedder(load_settings(data_dir=tmp_path, embedding_fp16=False))
    assert cpu.batch_size == 16
    full = make_embedder(
        load_settings(data_dir=tmp_path, embedding_device="cuda", embedding_fp16=False)
    )
    full.embed_documents(["a"])
    assert not full.model.halved


def test_the_default_falls_back_to_torch_where_the_export_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: SentenceEmbedder) -> None:
        raise ModelUnavailable("the ONNX export disagrees with PyTorch (cosine 0.90 < 0.98)")

    monkeypatch.setattr(SentenceEmbedder, "_load_exported", refuse)
    named = SentenceEmbedder(backend="onnx-int8", export_dir=str(tmp_path))
    with pytest.raises(ModelUnavailable, match="disagrees"):
        named.warm_up()
    auto = SentenceEmbedder(backend="onnx-int8", export_dir=str(tmp_path), fallback=True)
    auto.warm_up()
    assert auto.backend == "torch"
    assert auto.embed_documents(["a pump seal"]).shape == (1, 384)
