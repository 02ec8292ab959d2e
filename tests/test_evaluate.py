"""Evaluation: metrics JSON (pooled, per file, bootstrap), plots, scores equal detect's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_detect import save_tiny_model, write_wav

from musicdet.cli import main
from musicdet.detect import detect_file
from musicdet.evaluate import (
    FileScores,
    evaluate_model,
    read_labelled,
    score_files,
    summarize_scores,
)
from musicdet.features import FeatureCache
from musicdet.modelfile import load_model

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
    assert pooled.keys() >= RANKING and 0.0 <= pooled["auc"] <= 1.0
    assert pooled["frames"] == sum(f["frames"] for f in report["files"])
    assert [Path(f["audio"]).name for f in report["files"]] == ["a.wav", "b.wav", "c.wav"]
    one_class = report["files"][2]
    assert one_class["music_frames"] == 0 and one_class["auc"] is None
    assert one_class["at_model_threshold"]["accuracy"] is not None
    assert report["files"][0]["auc"] is not None
    bootstrap = report["bootstrap"]
    assert bootstrap["resampled"] == "files"
    assert bootstrap["auc_low"] <= bootstrap["auc_high"]


def test_evaluate_scores_are_what_detect_writes(tmp_path: Path, dataset: Path, model_file: Path):
    detector = load_model(model_file)
    items = read_labelled("synth", dataset)  # a synth corpus is read as generic labels
    scored = score_files(detector, items, FeatureCache(tmp_path / "cache"), progress=False)
    for item, file_scores in zip(items, scored, strict=True):
        streamed = detect_file(detector, item.audio, block_seconds=0.9).probabilities
        np.testing.assert_allclose(file_scores.scores, streamed, rtol=0, atol=1e-6)


def test_pooled_metrics_match_a_hand_made_case() -> None:
    labels = np.array([0, 0, 1, 1], dtype=np.float32)
    mask = np.ones(4, dtype=bool)
    files = [FileScores(Path("x.wav"), labels, mask, np.array([0.1, 0.4, 0.35, 0.8])),
             FileScores(Path("y.wav"), labels, mask, np.array([0.2, 0.3, 0.6, 0.9]))]
    report = summarize_scores(files, threshold=0.5)
    assert report["pooled"]["auc"] == pytest.approx(15 / 16)  # one of 16 pairs misordered
    assert report["files"][1]["auc"] == 1.0
    assert report["pooled"]["at_model_threshold"]["recall"] == pytest.approx(0.75)


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
