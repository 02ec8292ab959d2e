"""The model file: one self-contained file that `evaluate` and `detect` need nothing else to use.

It is a torch zip holding only tensors and one JSON string (weights, run config, feature
normalisation, validation metrics, package versions), so it loads with
``torch.load(weights_only=True)``: a crafted pickle is refused, never executed.
"""

from __future__ import annotations

import json
import pickle
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import RunConfig
from .features import Normalizer
from .fsutil import atomic_path
from .model import BiGRUDetector
from .sequences import frame_logits, sigmoid

FORMAT = "musicdet-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A file is not a usable musicdet model file; the message names the file."""


@dataclass
class Detector:
    """A trained detector: model + everything needed to score raw 140-dim feature frames."""

    model: BiGRUDetector
    config: RunConfig
    normalizer: Normalizer
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics of the saved epoch

    @property
    def threshold(self) -> float:
        """Default decision threshold on the music probability: the validation P=0.90 point."""
        value = self.metrics.get("val_threshold")
        return 0.5 if value is None else float(value)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Music probability (T,) for one file's raw features (T, 140)."""
        return sigmoid(self.logits(features))

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Frame logits (T,) for one file's raw features (T, 140)."""
        window = self.config.training.sequence_frames
        device = next(self.model.parameters()).device
        return frame_logits(self.model, self.normalizer.apply(features), window, device)


def save_model(
    path: str | Path,
    model: BiGRUDetector,
    config: RunConfig,
    normalizer: Normalizer,
    metrics: dict[str, Any],
) -> Path:
    """Write the self-contained model file atomically; returns its path."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "normalizer": normalizer.to_dict(),
        "metrics": metrics,
        "versions": {
            "musicdet": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"meta": json.dumps(meta), "state_dict": state}, tmp)
    return Path(path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Detector:
    """Load a model file; anything else (truncated, foreign, other version) → `ModelFileError`."""
    path = Path(path)
    meta, state = _read(path)
    version = meta.get("format_version")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a musicdet model file (format {meta.get('format')!r})")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version}, this musicdet "
            f"{__version__} reads version {FORMAT_VERSION}; retrain or use a matching musicdet"
        )
    try:
        config = RunConfig.from_dict(meta["config"])
        normalizer = Normalizer.from_dict(meta["normalizer"])
        metrics = dict(meta["metrics"])
    except (KeyError, TypeError, ValueError) as error:  # ConfigError is a ValueError
        raise ModelFileError(f"{path}: damaged model metadata ({error})") from None
    model = BiGRUDetector(config.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        message = f"{path}: weights do not match the stored model config: {first}"
        raise ModelFileError(message) from None
    model.to(device).eval()
    return Detector(model, config, normalizer, metrics)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for foreign files
        raise ModelFileError(
            f"{path}: not a readable musicdet model file (truncated, or not one): "
            f"{load_problem(error)}"
        ) from None
    if not isinstance(payload, dict) or not {"meta", "state_dict"} <= payload.keys():
        raise ModelFileError(f"{path}: not a musicdet model file (no meta/state_dict)")
    try:
        meta = json.loads(payload["meta"])
    except (TypeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: not a musicdet model file (unreadable metadata)") from None
    if not isinstance(meta, dict) or not isinstance(payload["state_dict"], dict):
        raise ModelFileError(f"{path}: not a musicdet model file (metadata or weights of the "
                             "wrong type)")
    return meta, payload["state_dict"]


def load_problem(error: Exception) -> str:
    """One line saying why ``torch.load(..., weights_only=True)`` refused a file."""
    if isinstance(error, pickle.UnpicklingError):  # the weights-only unpickler's refusal
        found = re.search(r"GLOBAL (\S+)", str(error))
        name = f" ({found.group(1)})" if found else ""
        return (f"it holds pickled Python objects{name}, not only tensors: refused, as loading "
                "them could run code")
    text = " ".join(str(error).split())
    return text.split(". ")[0][:200] or type(error).__name__
