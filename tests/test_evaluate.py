"""Evaluation: metrics JSON (pooled, per file, bootstrap), plots, scores equal detect's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from test_detect import save_tiny_model, write_wav

from musicdet.cli import main
from musicdet.detect import detect_file
from musicdet.evaluate import (
    FileScores,
    evaluate_model,
    pool,
    read_labelled,
    score_files,
    summarize_scores,
)
from musicdet.features import FeatureCache
from musicdet.modelfile import load_model
from musicdet.sequences import ScoringGrid

RANKING = {"auc", "eer", "recall", "f1", "precision", "threshold"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generic-format files: two half noise / half music, one without music."""
    root = tmp_path_factory.mktemp("data")
    for name, seconds, labels in (
        ("a", 4.0, "0\t2\tno-music\n2\t4\tmusic\n"),
        ("b", 3.0, "0\t1.5\tno-music\n1.5\t3\tmusic\n"),
        ("c", 2.0, "0\t2\tno-music\n"),
    ):
        write_wav(root / f"{name}.wav", seconds, seed=len(name) + int(seconds))
        (root / f"{name}.tsv").write_text("onset\toffset\tlabel\n" + labels)
    return root


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


def test_evaluate_writes_metrics_and_plots(tmp_path: Path, dataset: Path, model_file: Path):
    report = evaluate_model(model_file, dataset, tmp_path / "out", cache_dir=tmp_path / "cache",
                            bootstrap=50, progress=False)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == report
    assert (tmp_path / "out" / "roc.png").stat().st_size > 0
    assert (tmp_path / "out" / "scores.png").stat().st_size > 0
    pooled = report["pooled"]
    files = score_files(load_model(model_file), read_labelled("generic", dataset),
                        FeatureCache(tmp_path / "cache"), progress=False)
    labels, scores, mask = pool(files)
    assert pooled.keys() >= RANKING
    assert pooled["auc"] == pytest.approx(roc_auc_score(labels[mask], scores[mask]), abs=1e-12)
    assert pooled["frames"] == sum(f["frames"] for f in report["files"]) == int(mask.sum())
    assert [Path(f["audio"]).name for f in report["files"]] == ["a.wav", "b.wav", "c.wav"]
    one_class = report["files"][2]
    assert one_class["music_frames"] == 0 and one_class["auc"] is None
    assert one_class["at_model_threshold"]["accuracy"] is not None
    assert report["files"][0]["auc"] is not None
    bootstrap = report["bootstrap"]
    assert bootstrap["resampled"] == "files"
    low, high, used = naive_file_bootstrap(files, n=50, seed=0)
    assert bootstrap["replicates"] == used
    assert (bootstrap["auc_low"], bootstrap["auc_high"]) == pytest.approx((low, high), abs=1e-12)


def naive_file_bootstrap(files: list[FileScores], n: int, seed: int) -> tuple[float, float, int]:
    """95 % percentile interval of sklearn's AUC over ``n`` replicates that draw whole files
    with replacement (the same draws as `bootstrap_ci`: one ``integers`` call per replicate);
    replicates without both classes are dropped. Returns (low, high, replicates used)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        drawn = [files[i] for i in rng.integers(0, len(files), len(files))]
        labels = np.concatenate([f.labels[f.mask] for f in drawn])
        scores = np.concatenate([f.scores[f.mask] for f in drawn])
        if 0 < labels.sum() < labels.size:
            values.append(roc_auc_score(labels, scores))
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high), len(values)


def test_evaluate_scores_are_what_detect_writes(tmp_path: Path, dataset: Path, model_file: Path):
    detector = load_model(model_file)
    items = read_labelled("synth", dataset)  # a synth corpus is read as generic labels
    scored = score_files(detector, items, FeatureCache(tmp_path / "cache"), progress=False)
    for item, file_scores in zip(items, scored, strict=True):
        streamed = detect_file(detector, item.audio, block_seconds=0.9).probabilities
        np.testing.assert_allclose(file_scores.scores, streamed, rtol=0, atol=1e-6)


def test_evaluate_on_another_grid_scores_what_detect_writes_on_it(
        tmp_path: Path, dataset: Path, model_file: Path):
    report = evaluate_model(model_file, dataset, tmp_path / "out", cache_dir=tmp_path / "cache",
                            progress=False, window_frames=100, hop_frames=70)
    assert report["grid"] == {"window": 100, "hop": 70}
    detector = load_model(model_file)
    items = read_labelled("generic", dataset)
    scored = score_files(detector, items, FeatureCache(tmp_path / "cache"), progress=False,
                         grid=ScoringGrid(100, 70))
    for item, file_scores in zip(items, scored, strict=True):
        streamed = detect_file(detector, item.audio, block_seconds=0.9,
                               grid=ScoringGrid(100, 70)).probabilities
        np.testing.assert_allclose(file_scores.scores, streamed, rtol=0, atol=1e-6)
        default = detect_file(detector, item.audio).probabilities
        assert np.abs(default - streamed).max() > 1e-4  # the grid does change the scores


def test_pooled_metrics_match_a_hand_made_case() -> None:
    labels = np.array([0, 0, 1, 1], dtype=np.float32)
    mask = np.ones(4, dtype=bool)
    files = [FileScores(Path("x.wav"), labels, mask, np.array([0.1, 0.4, 0.35, 0.8])),
             FileScores(Path("y.wav"), labels, mask, np.array([0.2, 0.3, 0.6, 0.9]))]
    report = summarize_scores(files, threshold=0.5)
    assert report["pooled"]["auc"] == pytest.approx(15 / 16)  # one of 16 pairs misordered
    assert report["files"][1]["auc"] == 1.0
    assert report["pooled"]["at_model_threshold"]["recall"] == pytest.approx(0.75)


def test_recall_and_f1_follow_the_target_precision() -> None:
    """Pooled frames by descending score: 1 1 1 0 1 0 0 0. Precision 1 keeps the top three
    (recall 3/4); precision 0.8 reaches the fifth (4 of 5 correct, recall 1)."""
    labels = np.array([0, 0, 1, 1], dtype=np.float32)
    mask = np.ones(4, dtype=bool)
    files = [FileScores(Path("x.wav"), labels, mask, np.array([0.1, 0.4, 0.35, 0.8])),
             FileScores(Path("y.wav"), labels, mask, np.array([0.2, 0.3, 0.6, 0.9]))]
    strict = summarize_scores(files, threshold=0.5)
    loose = summarize_scores(files, threshold=0.5, target_precision=0.8)
    assert (strict["target_precision"], loose["target_precision"]) == (0.9, 0.8)
    assert (strict["pooled"]["recall"], strict["pooled"]["threshold"]) == (0.75, 0.6)
    assert (loose["pooled"]["recall"], loose["pooled"]["threshold"]) == (1.0, 0.35)
    assert loose["pooled"]["f1"] == pytest.approx(2 * 4 / (5 + 4))
    assert (strict["pooled"]["target_precision"], loose["pooled"]["target_precision"]) == \
        (0.9, 0.8)


def test_cli_evaluate_target_precision(tmp_path: Path, dataset: Path, model_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["evaluate", str(model_file), "--data", str(dataset), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main([*args, "--target-precision", "0.5"]) == 0
    assert "at P=0.5\n" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert report["target_precision"] == report["pooled"]["target_precision"] == 0.5
    assert main([*args, "--target-precision", "1.5"]) == 2
    assert capsys.readouterr().err == ("musicdet: error: target_precision: "
                                       "`0 < target_precision <= 1` must hold, but got 1.5\n")


def test_cli_evaluate(tmp_path: Path, dataset: Path, model_file: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["evaluate", str(model_file), "--data", str(dataset), "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(args) == 0
    assert "AUC" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["format"] == "generic"
    assert main([*args, "--option", "nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err
