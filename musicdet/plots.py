"""Figures of a detector's frame scores: ROC curve and per-class score histograms.

Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global state), so it
works in headless workers. ``*_figure`` functions return the Figure (for
``mlflow.log_figure``); ``plot_*`` functions save a PNG atomically and return its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from musicdet import metrics
from musicdet.fsutil import atomic_path

ROC_DRAWN_POINTS = 2000
"""At most this many ROC points are drawn (plus the ends); 10⁶ frames stay fast."""


@dataclass(frozen=True)
class RocPlotData:
    """What `roc_figure` draws; coordinates are (FPR, TPR)."""

    fpr: np.ndarray  # down-sampled ROC, from (0, 0) to (1, 1)
    tpr: np.ndarray
    auc: float
    eer: float
    eer_point: tuple[float, float]  # (EER, 1 − EER)
    target_precision: float
    operating_point: tuple[float, float] | None  # None when no threshold reaches the target


def roc_plot_data(
    labels: Any,
    scores: Any,
    mask: Any = None,
    target_precision: float = 0.90,
    max_points: int = ROC_DRAWN_POINTS,
) -> RocPlotData:
    """ROC points to draw (at most ``max_points`` + 2), EER point and operating point."""
    labels, scores = metrics.validate(labels, scores, mask)
    summary = metrics.evaluate(labels, scores, target_precision=target_precision, validate=False)
    fpr, tpr, _ = metrics.roc_points(labels, scores, validate=False)
    keep = _evenly_along(fpr, tpr, max_points)
    eer = cast(float, summary["eer"])
    point = None
    if summary["target_reached"]:
        point = (cast(float, summary["fpr"]), cast(float, summary["recall"]))
    return RocPlotData(
        fpr=fpr[keep],
        tpr=tpr[keep],
        auc=cast(float, summary["auc"]),
        eer=eer,
        eer_point=(eer, 1.0 - eer),
        target_precision=target_precision,
        operating_point=point,
    )


def _evenly_along(x: np.ndarray, y: np.ndarray, count: int) -> np.ndarray:
    """Indices of about ``count`` points spread evenly along the polyline, ends included."""
    if x.size <= count + 2:
        return np.arange(x.size)
    length = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))))
    marks = np.searchsorted(length, np.linspace(0.0, length[-1], count), side="left")
    return np.unique(np.concatenate(([0], marks, [x.size - 1])))


def roc_figure(
    labels: Any,
    scores: Any,
    mask: Any = None,
    title: str | None = None,
    target_precision: float = 0.90,
) -> Figure:
    """ROC curve with the chance diagonal, the EER point and the operating point."""
    data = roc_plot_data(labels, scores, mask, target_precision)
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(data.fpr, data.tpr, color="C0", label=f"ROC (AUC = {data.auc:.4f})")
    axes.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
    axes.plot([0, 1], [1, 0], color="0.85", linestyle=":", linewidth=1)
    axes.plot(*data.eer_point, "o", color="C3", label=f"EER = {data.eer:.4f}")
    if data.operating_point is not None:
        fpr, recall = data.operating_point
        label = f"P = {data.target_precision:.2f}: recall {recall:.3f}, FPR {fpr:.3f}"
        axes.plot(fpr, recall, "s", color="C2", label=label)
    else:
        axes.plot([], [], " ", label=f"precision {data.target_precision:.2f} not reached")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    axes.set_aspect("equal")
    axes.set_title(title or "ROC, frame level")
    axes.legend(loc="lower right", fontsize="small")
    return figure


def histogram_figure(
    labels: Any,
    scores: Any,
    mask: Any = None,
    threshold: float | None = None,
    bins: int = 50,
    title: str | None = None,
) -> Figure:
    """Score density of music and no-music frames on shared bins, with the threshold line."""
    labels, scores = metrics.validate(labels, scores, mask, both_classes=False)
    edges = np.histogram_bin_edges(scores, bins=bins)
    figure = _new_figure()
    axes = figure.add_subplot()
    for is_music, name, color in ((False, "no music", "C1"), (True, "music", "C0")):
        chosen = scores[labels == is_music]
        if chosen.size:
            density, _ = np.histogram(chosen, bins=edges, density=True)
            axes.stairs(
                density,
                edges,
                fill=True,
                alpha=0.45,
                color=color,
                label=f"{name} ({chosen.size} frames)",
            )
    if threshold is not None:
        axes.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.4g}")
    axes.set(xlabel="score", ylabel="density")
    axes.set_title(title or "Frame scores per class")
    axes.legend(fontsize="small")
    return figure


def plot_roc(
    labels: Any,
    scores: Any,
    path: str | Path,
    mask: Any = None,
    title: str | None = None,
    target_precision: float = 0.90,
) -> Path:
    """Save `roc_figure` as a PNG at ``path``; return the path."""
    return save_figure(roc_figure(labels, scores, mask, title, target_precision), path)


def plot_score_histograms(
    labels: Any,
    scores: Any,
    path: str | Path,
    mask: Any = None,
    threshold: float | None = None,
    bins: int = 50,
    title: str | None = None,
) -> Path:
    """Save `histogram_figure` as a PNG at ``path``; return the path."""
    return save_figure(histogram_figure(labels, scores, mask, threshold, bins, title), path)


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as PNG to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def _new_figure() -> Figure:
    figure = Figure(figsize=(5.5, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure
