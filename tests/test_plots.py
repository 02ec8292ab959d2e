"""musicdet.plots: PNG files, and the coordinates the ROC figure draws."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from musicdet import metrics, plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _case(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.5).astype(np.float32)
    return labels, 2.0 * labels + rng.normal(0.0, 1.0, n)


def _assert_png(path, expected):
    assert path == expected
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_plot_roc_writes_a_png(tmp_path):
    labels, scores = _case(2000)
    target = tmp_path / "figs" / "roc.png"
    _assert_png(plots.plot_roc(labels, scores, target, title="validation"), target)


def test_plot_score_histograms_writes_a_png(tmp_path):
    labels, scores = _case(2000)
    threshold = metrics.evaluate(labels, scores)["threshold"]
    target = tmp_path / "hist.png"
    path = plots.plot_score_histograms(labels, scores, str(target), threshold=threshold)
    _assert_png(path, target)


def test_roc_data_marks_eer_and_operating_point():
    labels, scores = _case(3000)
    data = plots.roc_plot_data(labels, scores)
    summary = metrics.evaluate(labels, scores)
    assert data.auc == summary["auc"] and data.eer == summary["eer"]
    assert data.eer_point == (summary["eer"], 1.0 - summary["eer"])
    assert data.operating_point == (summary["fpr"], summary["recall"])
    fpr, tpr, _ = metrics.roc_points(labels, scores)
    # the EER point lies on the full ROC polyline; the operating point is one of its vertices
    assert np.interp(data.eer, fpr, tpr) == pytest.approx(1.0 - data.eer, abs=2 / 1500)
    assert np.any((fpr == data.operating_point[0]) & (tpr == data.operating_point[1]))


def test_roc_is_thinned_for_drawing_but_keeps_its_shape():
    labels, scores = _case(200_000, seed=1)
    data = plots.roc_plot_data(labels, scores, max_points=500)
    assert data.fpr.size <= 502
    assert (data.fpr[0], data.tpr[0], data.fpr[-1], data.tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(data.fpr) >= 0) and np.all(np.diff(data.tpr) >= 0)
    drawn_area = np.trapezoid(data.tpr, data.fpr)
    assert drawn_area == pytest.approx(data.auc, abs=1e-3)


def test_small_roc_is_drawn_whole():
    data = plots.roc_plot_data([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.2])
    fpr, tpr, _ = metrics.roc_points([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.2])
    np.testing.assert_array_equal(data.fpr, fpr)
    np.testing.assert_array_equal(data.tpr, tpr)


def test_unreached_precision_is_said_in_the_legend():
    labels, scores = [1, 0, 1, 0], [0.1, 0.9, 0.2, 0.8]
    assert plots.roc_plot_data(labels, scores).operating_point is None
    figure = plots.roc_figure(labels, scores)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "precision 0.90 not reached" in legend


def test_figures_are_returned_for_mlflow():
    labels, scores = _case(500)
    roc = plots.roc_figure(labels, scores)
    histogram = plots.histogram_figure(labels, scores, threshold=0.5)
    assert isinstance(roc, Figure) and isinstance(histogram, Figure)
    legend = [t.get_text() for t in histogram.axes[0].get_legend().get_texts()]
    assert legend[-1] == "threshold 0.5"
    assert sum(text.startswith(("music", "no music")) for text in legend) == 2


def test_histogram_accepts_a_single_class_and_a_mask(tmp_path):
    labels, scores = _case(500)
    mask = labels == 1
    path = plots.plot_score_histograms(labels, scores, tmp_path / "music.png", mask=mask)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_bad_input_raises_the_metrics_error(tmp_path):
    with pytest.raises(metrics.MetricsError, match="finite"):
        plots.plot_roc([0, 1], [0.1, np.nan], tmp_path / "roc.png")
    assert not any(tmp_path.iterdir())
