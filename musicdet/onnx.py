"""ONNX export of a detector and an onnxruntime scorer that `detect` can use instead of torch.

`export_onnx` writes the model as one ONNX graph (opset `OPSET`) from raw features to logits:
input ``features`` (batch, time, 140) float32, the raw `extract_features` frames of windows;
output ``logits`` (batch, time). The graph holds the whole input normalisation: the model
file's min-max block scaling clipped to [0, 1] (`Normalizer.apply`) and, with
``input_norm: window``, the per-window standardisation; batch and time are dynamic axes.
Windowed scoring (300-frame windows, hop 150, triangular blending) stays outside, in
`sequences.blend_windows`, so a caller scores a file exactly as `Detector.logits` does.

Needs the ``onnx`` extra (onnx for the export, onnxruntime for scoring).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import warnings
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .configtools import ConfigError
from .fsutil import atomic_path
from .modelfile import Detector
from .sequences import blend_windows

OPSET = 17
"""ONNX opset of the exported graph (onnxruntime ≥ 1.13 runs it; GRU is opset 14's)."""
INPUT, OUTPUT = "features", "logits"
EXTRA = "pip install 'musicdet[onnx]'"


class RawFeatureModel(nn.Module):
    """A detector's model with its feature normalisation in front: raw (B, T, D) → logits."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        offset, scale = detector.normalizer.offset_scale()
        self.register_buffer("offset", torch.from_numpy(offset))
        self.register_buffer("scale", torch.from_numpy(scale))
        self.model = detector.model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        scaled = ((features - self.offset) * self.scale).clamp(0.0, 1.0)
        return self.model(scaled)


def onnx_bytes(detector: Detector, opset: int = OPSET) -> bytes:
    """The detector as a serialised ONNX model (see the module doc)."""
    _require("onnx", "exporting to ONNX")
    module = RawFeatureModel(detector).cpu().eval()
    window = detector.config.training.sequence_frames
    example = torch.zeros(2, window, detector.config.features.dims)
    axes = {0: "batch", 1: "time"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter's notes on GRU and batch_first
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: axes, OUTPUT: axes})
    return buffer.getvalue()


def export_onnx(detector: Detector, out: str | Path, opset: int = OPSET) -> Path:
    """Write the detector as ONNX to ``out`` atomically; returns ``out``."""
    data = onnx_bytes(detector, opset)
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(data)
    return Path(out)


class OnnxDetector:
    """Scores raw features like `Detector.logits`, with the model run by onnxruntime (CPU).

    ``threads``: onnxruntime's intra-op threads per batch (streaming runs `scoring_threads`
    single-threaded batches at once instead). One session serves every thread; each batch
    runs on its caller's thread, so it flushes denormals where the caller does
    (`sequences.scoring_pool`) and nowhere else.
    """

    stream_windows = 16
    """Windows per streamed round (`detect.stream_logits`): onnxruntime's GRU holds ~3 MB per
    window in flight; 16 against torch's 40 kept detect's peak RSS under 500 MB at about the
    same speed (1 h, 2 cores: 811× at 16, 827× at 20, 769× at 40 and 665× at 12, measured
    while the flush-to-zero flags leaked out of the scoring threads)."""

    def __init__(self, detector: Detector, threads: int = 1) -> None:
        ort = _require("onnxruntime", "--runtime onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # not "session.set_denormal_as_zero": it sets the flags of the thread that creates
        # the session, and every thread that one starts later inherits them
        self.detector = detector
        self.config = detector.config
        self.session = ort.InferenceSession(onnx_bytes(detector), options,
                                            providers=["CPUExecutionProvider"])
        _release_freed_memory()

    @property
    def threshold(self) -> float:
        return self.detector.threshold

    def score(self, batch: np.ndarray) -> np.ndarray:
        """Logits (B, L) of raw feature windows (B, L, D)."""
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(batch, np.float32)})[0]

    def logits(self, features: np.ndarray, batch_windows: int = 64,
               pool: Executor | None = None) -> np.ndarray:
        """Frame logits (T,) of one file's raw features (T, D), as `Detector.logits`."""
        return blend_windows(self.score, features, self.config.training.sequence_frames,
                             batch_windows, pool)


def _release_freed_memory() -> None:
    """Give the heap the export freed back to the system (glibc's ``malloc_trim``; ~35 MB of
    detect's resident memory); a no-op where the C library has none."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _require(module: str, purpose: str):  # noqa: ANN202 - the imported module
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(module, f"{purpose} needs the {module} package; install it with "
                                  f"{EXTRA}") from None
