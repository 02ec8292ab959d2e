"""musicdet.onnx: the exported graph and the onnxruntime path score as torch does (≤ 1e-4)."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from test_detect import save_tiny_model, tiny_detector, write_wav

from musicdet.batch import detect
from musicdet.cli import main
from musicdet.configtools import ConfigError
from musicdet.detect import resolve_runtime, scorer_for, stream_logits
from musicdet.modelfile import load_model
from musicdet.onnx import OPSET, OnnxDetector
from musicdet.sequences import scoring_pool, sigmoid

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def raw_features(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-8, 5, (frames, 128)), rng.uniform(0, 0.4, (frames, 12))],
                          1).astype(np.float32)


def test_export_onnx_has_dynamic_batch_and_time_and_the_scaling_inside(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model.pt")
    out = tmp_path / "model.onnx"
    assert main(["export-onnx", str(model), "--out", str(out)]) == 0
    assert f"ONNX opset {OPSET}" in capsys.readouterr().out
    graph = onnx.load(str(out))
    assert {o.domain: o.version for o in graph.opset_import}[""] == OPSET
    detector = load_model(model)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch, frames in ((1, 60), (3, 60), (2, 17)):
        windows = raw_features(batch * frames).reshape(batch, frames, 140)
        scaled = torch.from_numpy(detector.normalizer.apply(windows))
        with torch.no_grad():
            expected = detector.model(scaled).numpy()
        got = session.run(["logits"], {"features": windows})[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_frames", [7, 60, 61, 1000])
def test_onnx_detector_logits_equal_torch(n_frames):
    detector = tiny_detector(60)
    features = raw_features(n_frames, n_frames)
    np.testing.assert_allclose(OnnxDetector(detector, threads=1).logits(features),
                               detector.logits(features), rtol=0, atol=1e-4)


def test_default_model_on_onnx_equals_torch():
    """The shipped model (300-frame windows, BiGRU-128) on 3 000 frames."""
    from musicdet.shipped import DEFAULT_MODEL

    detector = load_model(DEFAULT_MODEL)
    features = raw_features(3000, 5)
    np.testing.assert_allclose(OnnxDetector(detector).logits(features),
                               detector.logits(features), rtol=0, atol=1e-4)


def test_streamed_onnx_on_steady_audio_equals_torch_on_the_whole_file():
    """Steady tones and silence drive the GRU's states into denormals, which the onnxruntime
    scoring threads flush to zero; streamed in its own blocks (`stream_windows`), the shipped
    model still gives torch's whole-file frame scores."""
    from musicdet.features import extract_features
    from musicdet.shipped import DEFAULT_MODEL

    detector = load_model(DEFAULT_MODEL)
    rate = detector.config.features.sample_rate
    time_axis = np.arange(25 * rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * time_axis)
    audio = np.concatenate([tone, np.zeros(20 * rate), tone, 1e-4 * tone]).astype(np.float32)
    features = extract_features(audio, detector.config.features)
    scorer = OnnxDetector(detector)
    assert len(features) > 2 * scorer.stream_windows * 150  # several blocks
    blocks = [features[start : start + 1000] for start in range(0, len(features), 1000)]
    streamed = np.concatenate(list(stream_logits(scorer, blocks)))
    np.testing.assert_allclose(sigmoid(streamed), detector.probabilities(features), rtol=0,
                               atol=1e-4)


def test_cli_detect_runtime_onnx_writes_the_torch_scores(tmp_path):
    model = save_tiny_model(tmp_path / "model.pt")
    audio = write_wav(tmp_path / "in" / "prog.wav", 12.0)
    for runtime in ("torch", "onnx"):
        assert main(["detect", str(model), str(audio), "--out", str(tmp_path / runtime),
                     "--frame-scores", "npy", "--runtime", runtime, "--quiet"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "onnx" / "prog.frames.npy"),
                               np.load(tmp_path / "torch" / "prog.frames.npy"), rtol=0, atol=1e-4)
    assert ((tmp_path / "onnx" / "prog.segments.tsv").read_text()
            == (tmp_path / "torch" / "prog.segments.tsv").read_text())


def test_unknown_runtime_and_onnx_off_the_cpu_are_refused(tmp_path):
    detector = tiny_detector()
    with pytest.raises(ConfigError,
                       match=r"^runtime: expected one of auto, torch, onnx, got 'tvm'"):
        detect(detector, [write_wav(tmp_path / "a.wav", 1.0)], tmp_path / "out",
               runtime="tvm", progress=False)
    detector.model.to("meta")
    with pytest.raises(ConfigError, match=r"^runtime: onnx runs on the CPU"):
        scorer_for(detector, "onnx")


def test_a_missing_onnx_package_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    model, out = save_tiny_model(tmp_path / "model.pt"), tmp_path / "model.onnx"
    assert main(["export-onnx", str(model), "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("musicdet: error: onnx: exporting to ONNX needs the onnx "
                                       "package; install it with pip install 'musicdet[onnx]'\n")
    assert not out.exists()


def test_auto_runtime_is_onnx_on_the_cpu_where_installed_and_recorded_as_such(
        tmp_path, monkeypatch):
    detector = tiny_detector()
    assert resolve_runtime(detector, "auto") == "onnx"
    assert isinstance(scorer_for(detector, "auto"), OnnxDetector)
    assert resolve_runtime(detector, "torch") == "torch"
    detect(detector, [write_wav(tmp_path / "a.wav", 2.0)], tmp_path / "out", progress=False)
    assert json.loads((tmp_path / "out" / "detect-run.json").read_text())["runtime"] == "onnx"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name))
    assert resolve_runtime(detector, "auto") == "torch"
    assert scorer_for(detector, "auto") is detector
    monkeypatch.undo()
    detector.model.to("meta")
    assert resolve_runtime(detector, "auto") == "torch"


def subnormals_survive() -> bool:
    return bool(np.float64(5e-324) * np.float64(1.0) != 0)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_only_the_scoring_threads_flush_denormals(runtime: str):
    """Streamed scoring flushes denormals in its `scoring_pool` threads, never in the caller's
    (numpy, hypothesis and the rest of the process keep IEEE subnormals)."""
    detector = tiny_detector()
    scorer = scorer_for(detector, runtime)
    assert subnormals_survive()
    features = raw_features(700)
    streamed = np.concatenate(list(stream_logits(scorer, [features[:350], features[350:]])))
    np.testing.assert_allclose(streamed, detector.logits(features), rtol=0, atol=1e-4)
    assert subnormals_survive()
    with scoring_pool(1) as pool:
        assert not pool.submit(subnormals_survive).result()
