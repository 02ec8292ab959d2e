"""The model file: one self-contained file that `evaluate` and `detect` need nothing else to use.

It is a torch zip holding only tensors and one JSON string (weights, run config, feature
normalisation, validation metrics, the default operating point and why it was chosen, the
training data and the corpus that made it, package versions, recorded evaluations), so it
loads with ``torch.load(weights_only=True)``: a crafted pickle is refused, never executed.
`record_evaluation` adds an evaluation summary to a file and leaves its weights, config and
everything else as they were; each summary names the SHA-256 of the weights it measured
(`weights_digest`).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import re
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from . import __version__
from .config import METRIC_DIRECTIONS, DataConfig, RunConfig
from .configtools import from_dict, require
from .features import Normalizer
from .fsutil import atomic_path
from .model import BiGRUDetector
from .sequences import ScoringGrid, blend_windows, sigmoid, torch_scorer

FORMAT = "musicdet-model"
FORMAT_VERSION = 1
OLDER_DEFAULTS = {"model": {"input_norm": "none"}}
"""Run-config options whose default changed, with the value files written before them used."""
EVALUATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
T = TypeVar("T")


class ModelFileError(ValueError):
    """A file is not a usable musicdet model file; the message names the file."""


@dataclass(frozen=True)
class OperatingPoint:
    """The default decision threshold on the music probability and the rule that chose it."""

    threshold: float
    rule: str  # one sentence: how the threshold was chosen
    median_seconds: float  # median filter the validation scores went through first (s; 0: none)

    def __post_init__(self) -> None:
        require(0 <= self.threshold <= 1, "threshold", "0 <= threshold <= 1", self.threshold)
        require(self.median_seconds >= 0, "median_seconds", "median_seconds >= 0",
                self.median_seconds)


@dataclass(frozen=True)
class TrainingData:
    """How much labelled audio trained the model and validated it (files, hours), and the
    synthetic corpus it came from, as its corpus.json says (None / empty: not one)."""

    train_files: int
    train_hours: float
    validation_files: int
    validation_hours: float
    corpus_hours: float | None = None
    corpus_seed: int | None = None
    providers: list[str] = field(default_factory=list)  # "name (version)" of each provider

    def describe(self) -> str:
        return (f"train {_amount(self.train_hours, self.train_files)}, "
                f"validation {_amount(self.validation_hours, self.validation_files)}")

    def describe_corpus(self) -> str | None:
        """The synthetic corpus and its providers; None where not recorded."""
        if self.corpus_hours is None:
            return None
        return (f"{self.corpus_hours:g} h synthetic corpus of seed {self.corpus_seed}; "
                f"providers: {', '.join(self.providers) or 'none recorded'}")


def _amount(hours: float, files: int) -> str:
    return f"{hours:.3g} h in {files} file{'s' * (files != 1)}"


def older_operating_point(metrics: dict[str, Any]) -> OperatingPoint:
    """The default threshold of a model file written before files stored their operating point.

    Such files are still used as they were: the P = 0.90 point chosen on raw validation frames
    (detect median-filters before thresholding, so it is not quite that point there), or 0.5
    when validation never reached that precision; `Detector.describe` says which.
    """
    value = metrics.get("val_threshold")
    if value is None:
        return OperatingPoint(0.5, "older model file whose validation never reached precision "
                                   "0.90: 0.5, not a validated point", 0.0)
    return OperatingPoint(float(value), "older model file: precision 0.90 on raw validation "
                                        "frames, before the median filter detect applies", 0.0)


@dataclass
class Detector:
    """A trained detector: model + everything needed to score raw 140-dim feature frames."""

    model: BiGRUDetector
    config: RunConfig
    normalizer: Normalizer
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics of the saved epoch
    operating_point: OperatingPoint | None = None  # as stored; None in older files
    training_data: TrainingData | None = None  # None: not recorded (older file)
    versions: dict[str, str] = field(default_factory=dict)  # of the packages that trained it
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)  # by name, as recorded

    @property
    def threshold(self) -> float:
        """Default decision threshold on the median-filtered music probability (see `describe`)."""
        return self.default_point.threshold

    @property
    def default_point(self) -> OperatingPoint:
        """The stored operating point, or an older file's (`older_operating_point`)."""
        return self.operating_point or older_operating_point(self.metrics)

    def describe(self) -> dict[str, str]:
        """What the model was trained on and how, one line of text per item, in print order."""
        config, metrics = self.config, self.metrics
        point = self.default_point
        select = config.training.select_metric
        corpus = self.training_data.describe_corpus() if self.training_data else None
        augment = {"augment": config.augment.describe()} if config.augment.active else {}
        return {
            "data": _describe_data(config.data),
            "training data": self.training_data.describe() if self.training_data else
                             "not recorded",
            "corpus": corpus or ("not recorded" if config.data.format == "synth" else
                                 "none (not synthetic)"),
            "seed": str(config.seed),
            "front end": f"{config.features.mel_scaling} Mel + chroma, min-max block scaling, "
                         f"input_norm {config.model.input_norm}",
            "loss": " ".join([config.loss.type, *(f"{k}={v:g}" for k, v in
                                                 config.loss.active_params().items())]),
            **augment,
            "epochs": f"{config.training.epochs}; kept epoch {_number(metrics.get('epoch'))}, "
                      f"the best by {select} ({METRIC_DIRECTIONS[select]})",
            "validation": _describe_metrics(metrics, config),
            "threshold": f"{point.threshold:.4f} ({point.rule})",
            "versions": ", ".join(f"{k} {v}" for k, v in self.versions.items()) or "not recorded",
            "weights": f"sha256 {self.weights_sha256()}",
        }

    def weights_sha256(self) -> str:
        """`weights_digest` of this model's weights."""
        return weights_digest(self.model.state_dict())

    def figures_table(self) -> list[str]:
        """Validation and every recorded evaluation, one row each, as aligned text lines.

        Ranking metrics at each row's precision P (0.90 unless evaluated otherwise); "F1 thr":
        F1 of detect's decisions at the model's own threshold (not measured in validation).
        A record of other weights than these is marked so.
        """
        rows = [["set", "data", "files", "hours", "AUC", "EER", "P", "recall", "F1", "F1 thr"]]
        if "val_auc" in self.metrics:
            amounts = self.training_data
            rows.append(["validation", "held out", _number(amounts and amounts.validation_files),
                         _fixed(amounts and amounts.validation_hours, 3),
                         *(_fixed(self.metrics.get(k)) for k in ("val_auc", "val_eer")), "0.90",
                         *(_fixed(self.metrics.get(k)) for k in ("val_recall", "val_f1")), "-"])
        mine = self.weights_sha256()
        for name, record in self.evaluations.items():
            mark = "" if record.get("weights_sha256") == mine else " (other weights)"
            rows.append([name + mark, str(record.get("data")), _number(record.get("files")),
                         _fixed(record.get("hours"), 3),
                         *(_fixed(record.get(k)) for k in ("auc", "eer")),
                         _fixed(record.get("target_precision"), 2),
                         *(_fixed(record.get(k)) for k in ("recall", "f1", "threshold_f1"))])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                          for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                for row in rows]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Music probability (T,) for one file's raw features (T, 140)."""
        return sigmoid(self.logits(features))

    def logits(self, features: np.ndarray, batch_windows: int = 64,
               pool: Executor | None = None) -> np.ndarray:
        """Frame logits (T,) for one file's raw features (T, 140), ``batch_windows`` windows
        through the model at a time, in ``pool``'s threads if given (`blend_windows`)."""
        return blend_windows(self.score, features, self.config.training.sequence_frames,
                             batch_windows, pool)

    def grid(self, window_frames: int | None = None, hop_frames: int | None = None
             ) -> ScoringGrid:
        """The scoring grid of `logits` (windows of the training sequence every half window),
        or windows of ``window_frames`` every ``hop_frames`` (`ScoringGrid.of`)."""
        window = self.config.training.sequence_frames if window_frames is None else window_frames
        return ScoringGrid.of(window, hop_frames)

    def score(self, batch: np.ndarray) -> np.ndarray:
        """Logits (B, L) of raw feature windows (B, L, 140) (a `sequences.WindowScorer`)."""
        device = next(self.model.parameters()).device
        return torch_scorer(self.model, device)(self.normalizer.apply(batch))


def _describe_data(data: DataConfig) -> str:
    if data.format == "synth":
        return f"synth, {data.synth_hours:g} h corpus of seed {data.synth_seed}"
    return f"{data.format} at {data.path}"


def _describe_metrics(metrics: dict[str, Any], config: RunConfig) -> str:
    """The kept epoch's validation figures; with a validation: set, on which set, and the
    held-out split of the data's."""
    if "val_auc" not in metrics:
        return "not recorded"
    text = f"AUC {metrics['val_auc']:.4f}, EER {metrics['val_eer']:.4f}"
    if config.validation is not None:
        text += f" on {_describe_data(config.validation)}"
    if metrics.get("val_precision") is None:
        text += "; no threshold reached precision 0.90 on raw frames"
    else:
        text += (f"; at precision 0.90: recall {metrics['val_recall']:.4f}, "
                 f"F1 {metrics['val_f1']:.4f}")
    if "train_val_auc" in metrics:
        text += (f"; held-out split of the data: AUC {metrics['train_val_auc']:.4f}, "
                 f"EER {metrics['train_val_eer']:.4f}")
    return text


def _number(value: Any) -> str:
    return "unknown" if value is None else f"{value:g}"


def _fixed(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of weights: each tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model(
    path: str | Path,
    model: BiGRUDetector,
    config: RunConfig,
    normalizer: Normalizer,
    metrics: dict[str, Any],
    *,
    operating_point: OperatingPoint | None = None,
    training_data: TrainingData | None = None,
) -> Path:
    """Write the self-contained model file atomically; returns its path."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "normalizer": normalizer.to_dict(),
        "metrics": metrics,
        "operating_point": None if operating_point is None else asdict(operating_point),
        "training_data": None if training_data is None else asdict(training_data),
        "versions": {
            "musicdet": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    _write(Path(path), meta, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    return Path(path)


def record_evaluation(path: str | Path, name: str, record: Mapping[str, Any]) -> None:
    """Store evaluation summary ``record`` in model file ``path`` under ``name`` (replacing a
    record of that name), atomically: weights, config and all else stay as they were.

    ``record["weights_sha256"]`` must be the file's own `weights_digest`: an evaluation of
    other weights is refused (`ModelFileError`).
    """
    require(EVALUATION_NAME.fullmatch(name) is not None, "record",
            "a name of up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            name)
    path = Path(path)
    load_model(path)  # an intact model file of this format, or ModelFileError
    meta, state = _read(path)
    if record.get("weights_sha256") != weights_digest(state):
        raise ModelFileError(f"{path}: the evaluation to record measured other weights than "
                             "this file holds (was the file replaced meanwhile?)")
    meta["evaluations"] = {**meta.get("evaluations", {}), name: dict(record)}
    _write(path, meta, state)


def _write(path: Path, meta: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"meta": json.dumps(meta), "state_dict": state}, tmp)


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
        config = RunConfig.from_dict(_with_older_defaults(meta["config"]))
        normalizer = Normalizer.from_dict(meta["normalizer"])
        metrics = dict(meta["metrics"])
        point = _optional(OperatingPoint, meta, "operating_point")  # absent in older files
        training_data = _optional(TrainingData, meta, "training_data")
        versions = {str(k): str(v) for k, v in meta.get("versions", {}).items()}
        evaluations = {str(k): dict(v) for k, v in meta.get("evaluations", {}).items()}
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # ConfigError: ValueError
        raise ModelFileError(f"{path}: damaged model metadata ({error})") from None
    model = BiGRUDetector(config.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        message = f"{path}: weights do not match the stored model config: {first}"
        raise ModelFileError(message) from None
    model.to(device).eval()
    return Detector(model, config, normalizer, metrics, point, training_data, versions,
                    evaluations)


def _with_older_defaults(config: Any) -> Any:
    """A stored run config with each of `OLDER_DEFAULTS` filled in where the file lacks it."""
    if not isinstance(config, dict):
        return config  # RunConfig.from_dict names the problem
    filled = dict(config)
    for section, values in OLDER_DEFAULTS.items():
        if isinstance(filled.get(section, {}), dict):
            filled[section] = {**values, **filled.get(section, {})}
    return filled


def _optional(cls: type[T], meta: dict[str, Any], key: str) -> T | None:
    """``meta[key]`` as a ``cls`` (None where absent or null); a bad value → `ConfigError`."""
    value = meta.get(key)
    return None if value is None else from_dict(cls, value, key)


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
