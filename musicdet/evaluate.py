"""Evaluate a model file on labelled audio: the paper's frame-level metrics, no collar.

Scores are `Detector.probabilities` of each file's raw features (read through the
`FeatureCache` with the model's own `FeatureConfig`; windows on another `ScoringGrid` if
asked), exactly what ``musicdet detect --frame-scores`` writes on the same grid. Metrics
(`musicdet.metrics`): AUC, EER, and recall / F1 / precision at the threshold with the
highest recall at precision >= ``target_precision`` (0.90), pooled over all files and per
file; also accuracy / precision / recall / F1 at the model's own
validation threshold.
Bootstrap confidence intervals resample whole files. `evaluation_record` is the summary
``musicdet evaluate --record NAME`` stores in the model file (figures, the data folder's name
and a hash of its file list; never audio).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import __version__
from .configtools import require
from .datasets import LabelledAudio, read_dataset
from .detect import median_smooth, seconds_to_frames
from .devices import choose_device
from .examples import load_example
from .features import FeatureCache
from .fsutil import write_text
from .metrics import bootstrap_ci, evaluate, threshold_metrics
from .modelfile import Detector, load_model
from .plots import plot_roc, plot_score_histograms
from .sequences import ScoringGrid, blend_windows, sigmoid

METRICS_FILE = "metrics.json"
ROC_FILE = "roc.png"
HISTOGRAM_FILE = "scores.png"
RANKING_KEYS = ("auc", "eer", "recall", "f1", "precision", "threshold")


@dataclass
class FileScores:
    """One labelled file scored: labels (T,) 0/1, mask (T,) bool, music probabilities (T,)."""

    audio: Path
    labels: np.ndarray
    mask: np.ndarray
    scores: np.ndarray


def read_labelled(
    format: str, path: str | Path, label_map: Mapping[str, str] | None = None,
    **options: Any,
) -> list[LabelledAudio]:
    """Labelled files at ``path``; "synth" is a corpus written by `musicdet synth` (generic)."""
    return read_dataset("generic" if format == "synth" else format, path, label_map, **options)


def score_files(
    detector: Detector, items: Sequence[LabelledAudio], cache: FeatureCache,
    progress: bool = True, grid: ScoringGrid | None = None,
) -> list[FileScores]:
    """Frame labels and music probabilities of every labelled file, its windows on ``grid``
    (default: the model's, as `Detector.probabilities`)."""
    grid = grid or detector.grid()
    scored = []
    for item in tqdm(items, desc="evaluate", unit="file", disable=not progress):
        example = load_example(item, cache, detector.config.features)
        logits = blend_windows(detector.score, example.features, grid.window, hop=grid.hop)
        scored.append(FileScores(item.audio, example.labels, example.mask, sigmoid(logits)))
    return scored


def pool(files: Sequence[FileScores]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, scores and mask of all ``files`` end to end."""
    return tuple(np.concatenate([getattr(f, name) for f in files])  # type: ignore[return-value]
                 for name in ("labels", "scores", "mask"))


def summarize_scores(
    files: Sequence[FileScores], threshold: float, bootstrap: int = 0, seed: int = 0,
    target_precision: float = 0.90, median_frames: int = 0,
) -> dict[str, Any]:
    """Pooled and per-file metrics (JSON-ready), recall / F1 at ``target_precision``; with
    ``bootstrap`` > 0 replicates, AUC and EER confidence intervals (95 %) resampling whole
    files.

    The metrics at the model's ``threshold`` are those of detect's decisions: each file's
    probabilities median-filtered over ``median_frames`` frames first, as detect does.
    """
    if not files:
        raise ValueError("data: no labelled files to evaluate; expected at least one")
    labels, scores, mask = pool(files)
    smoothed = [median_smooth(f.scores, median_frames) for f in files]
    measure = partial(_metrics, threshold=threshold, target_precision=target_precision)
    report: dict[str, Any] = {
        "model_threshold": threshold,
        "model_threshold_median_frames": median_frames,
        "target_precision": target_precision,
        "pooled": measure(labels, scores, mask, np.concatenate(smoothed), pooled=True),
        "files": [{"audio": str(f.audio), **measure(f.labels, f.scores, f.mask, s)}
                  for f, s in zip(files, smoothed, strict=True)],
    }
    if bootstrap > 0:
        groups = np.concatenate([np.full(len(f.labels), i) for i, f in enumerate(files)])
        report["bootstrap"] = bootstrap_ci(labels, scores, groups, mask=mask, n=bootstrap,
                                           seed=seed) | {"resampled": "files", "level": 0.95}
    return report


def evaluate_model(
    model: str | Path | Detector,
    data: str | Path,
    out_dir: str | Path,
    *,
    format: str = "generic",
    options: Mapping[str, Any] | None = None,
    cache_dir: str | Path = "runs/cache",
    bootstrap: int = 0,
    seed: int = 0,
    target_precision: float = 0.90,
    device: str = "cpu",
    progress: bool = True,
    window_frames: int | None = None,
    hop_frames: int | None = None,
) -> dict[str, Any]:
    """Score the labelled set ``data`` and write OUT/metrics.json, roc.png and scores.png.

    The model's training label map applies; ``options`` go to the dataset reader (e.g.
    OpenBMAT ``folds``); the model runs on ``device`` (auto, cpu or cuda), its windows
    ``window_frames`` long (default: the model's) every ``hop_frames`` (default: half a
    window), as `batch.detect`'s. Returns the report written to metrics.json.
    """
    require(0.0 < target_precision <= 1.0, "target_precision", "0 < target_precision <= 1",
            target_precision)
    detector = model if isinstance(model, Detector) else load_model(model)
    detector.model.to(choose_device(device))
    items = read_labelled(format, data, detector.config.data.label_map or None,
                          **dict(options or {}))
    grid = detector.grid(window_frames, hop_frames)
    files = score_files(detector, items, FeatureCache(cache_dir), progress, grid)
    report = {
        "model": str(model) if not isinstance(model, Detector) else None,
        "weights_sha256": detector.weights_sha256(),
        "data": str(data),
        "format": format,
        "hours": sum(item.duration for item in items) / 3600,
        "file_list_sha256": file_list_digest([item.audio for item in items], Path(data)),
        "grid": asdict(grid),
        **summarize_scores(files, detector.threshold, bootstrap, seed, target_precision,
                           median_frames(detector)),
    }
    out = Path(out_dir)
    write_text(out / METRICS_FILE, json.dumps(report, indent=2) + "\n")
    labels, scores, mask = pool(files)
    plot_roc(labels, scores, out / ROC_FILE, mask=mask)
    plot_score_histograms(labels, scores, out / HISTOGRAM_FILE, mask=mask,
                          threshold=detector.threshold)
    return report


def file_list_digest(paths: Sequence[Path], root: Path) -> str:
    """SHA-256 (hex) of which files a set holds: sorted paths relative to ``root`` with their
    sizes in bytes (not their content)."""
    root = root.resolve()

    def entry(path: Path) -> str:
        full = path.resolve()
        name = full.relative_to(root) if full.is_relative_to(root) else full
        return f"{name.as_posix()}\t{full.stat().st_size}\n"

    return hashlib.sha256("".join(sorted(map(entry, paths))).encode("utf-8")).hexdigest()


def evaluation_record(report: Mapping[str, Any]) -> dict[str, Any]:
    """The summary of an `evaluate_model` report that a model file records: pooled AUC, EER,
    recall / F1 at the target precision, precision / recall / F1 at the model's threshold,
    files, hours, the data folder's name and file-list hash, the weights measured, when."""
    pooled = report["pooled"]
    at_threshold = pooled["at_model_threshold"] or {}
    return {
        "data": Path(report["data"]).resolve().name,
        "format": report["format"],
        "files": len(report["files"]),
        "hours": report["hours"],
        "file_list_sha256": report["file_list_sha256"],
        "grid": report["grid"],
        **{key: pooled[key] for key in ("auc", "eer")},
        "target_precision": report["target_precision"],
        **{key: pooled[key] for key in ("recall", "f1")},
        "model_threshold": report["model_threshold"],
        **{f"threshold_{key}": at_threshold.get(key) for key in ("precision", "recall", "f1")},
        "weights_sha256": report["weights_sha256"],
        "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
        "musicdet": __version__,
    }


def median_frames(detector: Detector) -> int:
    """Frames of the median filter the model's default threshold was chosen after."""
    return seconds_to_frames(detector.default_point.median_seconds,
                             detector.config.features.hop_seconds)


def _metrics(
    labels: np.ndarray, scores: np.ndarray, mask: np.ndarray, smoothed: np.ndarray,
    threshold: float, target_precision: float, pooled: bool = False,
) -> dict[str, Any]:
    """Frame counts, ranking metrics at ``target_precision`` (None where a class is missing,
    except when pooled: then that is an error) and the metrics of the ``smoothed`` scores at
    the model's threshold."""
    kept = labels[mask]
    music = int(kept.sum())
    counts = {"frames": int(kept.size), "music_frames": music}
    if kept.size == 0:
        return counts | dict.fromkeys(RANKING_KEYS) | {"at_model_threshold": None}
    if pooled or 0 < music < kept.size:
        ranking = evaluate(labels, scores, mask, target_precision)
    else:
        ranking = dict.fromkeys(RANKING_KEYS)
    return counts | ranking | {"at_model_threshold": threshold_metrics(labels, smoothed,
                                                                      threshold, mask)}
