"""The whole detector through its CLI: synth → train → evaluate → detect → segments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musicdet.cli import main
from musicdet.datasets import frame_labels, read_dataset
from musicdet.metrics import auc
from musicdet.modelfile import load_model


@pytest.mark.slow
def test_synth_train_evaluate_detect_round_trip(tmp_path: Path) -> None:
    corpus, cache, model = tmp_path / "corpus", tmp_path / "cache", tmp_path / "model"
    assert main(["synth", "--hours", "0.05", "--seed", "3", "--out", str(corpus), "--quiet"]) == 0
    settings = ["model.hidden_size=16", "training.epochs=2", "training.batch_size=8",
                "training.sequences_per_epoch=16", f"data.cache_dir={cache}",
                "data.validation_fraction=0.34"]
    train_args = ["train", "--format", "generic", "--data", str(corpus), "--out", str(model)]
    assert main([*train_args, *(a for s in settings for a in ("--set", s)), "--quiet"]) == 0
    model_file = model / "model.pt"

    assert main(["evaluate", str(model_file), "--data", str(corpus), "--format", "generic",
                 "--cache-dir", str(cache), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())

    assert main(["detect", str(model_file), str(corpus), "--out", str(tmp_path / "det"),
                 "--frame-scores", "npy", "--quiet"]) == 0
    items = read_dataset("generic", corpus)
    hop_seconds = load_model(model_file).config.features.hop_seconds
    assert len(items) == 3
    labels, scores = [], []
    for item in items:
        probabilities = np.load(tmp_path / "det" / f"{item.audio.stem}.frames.npy")
        labels.append(frame_labels(item, len(probabilities), hop_seconds)[0])
        scores.append(probabilities)
        segments = (tmp_path / "det" / f"{item.audio.stem}.segments.tsv").read_text()
        rows = [line.split("\t") for line in segments.splitlines()[1:]]
        assert rows[0][0] == "0.000000" and float(rows[-1][1]) == pytest.approx(item.duration)
        assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False))
        assert {row[2] for row in rows} <= {"music", "no-music"}
    # evaluate scores exactly what detect writes: the pooled AUCs agree
    pooled = auc(np.concatenate(labels), np.concatenate(scores))
    assert report["pooled"]["auc"] == pytest.approx(pooled, abs=1e-6)
