"""The model's default threshold: chosen on the median-filtered validation scores that detect
thresholds, by a rule the model file states (`Detector.describe`), also for older files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musicdet.config import RunConfig
from musicdet.features import Normalizer
from musicdet.metrics import operating_point
from musicdet.model import BiGRUDetector
from musicdet.modelfile import OperatingPoint, TrainingData, load_model, save_model
from musicdet.train import Validation, choose_operating_point

SMOOTHED = "validation scores median-filtered over 0.5 s"


def validation(*files: tuple[list[float], list[float]]) -> Validation:
    """A validation of files given as (labels, probabilities), every frame valid."""
    labels = np.concatenate([np.array(f[0], np.float32) for f in files])
    return Validation(0.0, {}, [np.array(f[1]) for f in files], labels,
                      np.ones(len(labels), bool), [f"file-{i}" for i in range(len(files))])


def test_single_frame_spikes_that_the_median_removes_do_not_decide_the_threshold():
    # no-music frames at 0.2 with every 5th at 0.95: raw, precision never reaches 0.90
    spiky = [0.95 if i % 5 == 0 else 0.2 for i in range(500)]
    val = validation(([1.0] * 500 + [0.0] * 500, [0.8] * 500 + spiky))
    assert not operating_point(val.labels, val.probabilities[0], val.mask)["target_reached"]
    point = choose_operating_point(val, frames_per_second=100.0)
    assert point == OperatingPoint(0.8, f"precision 0.90, highest recall, on {SMOOTHED}", 0.5)


def test_without_precision_090_the_threshold_is_the_equal_error_point():
    # 100-frame blocks (the median keeps them): at 0.9 TPR = FPR = 0.25; at 0.5 TPR = 0.5,
    # FPR = 0.75 >= FNR = 0.5, the first point past equal error; precision is at most 0.5
    labels = [1.0] * 100 + [0.0] * 100 + [1.0] * 100 + [0.0] * 300 + [1.0] * 200 + [0.0] * 100
    scores = [0.9] * 200 + [0.5] * 400 + [0.1] * 300
    point = choose_operating_point(validation((labels, scores)), frames_per_second=100.0)
    assert point == OperatingPoint(
        0.5, f"no threshold reached precision 0.90 on {SMOOTHED}: equal-error point", 0.5)


def test_the_median_length_follows_the_frame_rate():
    # at 50 frames/s, 0.5 s is 25 frames: a 20-frame music burst in no-music survives it
    labels = [0.0] * 100 + [1.0] * 20 + [0.0] * 100
    scores = [0.1] * 100 + [0.7] * 20 + [0.1] * 100
    point = choose_operating_point(validation((labels, scores)), frames_per_second=50.0)
    assert point.threshold == 0.7
    wiped = choose_operating_point(validation((labels, scores)), frames_per_second=100.0)
    assert wiped.threshold == 0.1 and "equal-error" in wiped.rule  # 51 frames erase it


def model_file(path: Path, metrics: dict, **extra) -> Path:
    config = RunConfig.from_dict({"model": {"hidden_size": 4}})
    features = np.random.default_rng(0).normal(size=(50, 140)).astype(np.float32)
    return save_model(path, BiGRUDetector(config.model), config, Normalizer.fit([features]),
                      metrics, **extra)


def drop_keys(path: Path, *keys: str) -> Path:
    """The file as musicdet wrote it before it stored these metadata keys."""
    content = torch.load(path, weights_only=True)
    meta = json.loads(content["meta"])
    content["meta"] = json.dumps({k: v for k, v in meta.items() if k not in keys})
    torch.save(content, path)
    return path


def test_operating_point_and_training_data_round_trip(tmp_path):
    point = OperatingPoint(0.625, "a rule", 0.5)
    amounts = TrainingData(12, 0.2, 1, 0.05)
    detector = load_model(model_file(tmp_path / "m.pt", {"epoch": 3, "val_auc": 0.9,
                                                         "val_eer": 0.1},
                                     operating_point=point, training_data=amounts))
    assert detector.operating_point == point and detector.threshold == 0.625
    assert detector.training_data == amounts
    lines = detector.describe()
    assert list(lines) == ["data", "training data", "corpus", "seed", "front end", "loss",
                           "epochs", "validation", "threshold", "versions", "weights"]
    assert lines["data"] == "synth, 0.25 h corpus of seed 0"
    assert lines["training data"] == "train 0.2 h in 12 files, validation 0.05 h in 1 file"
    assert lines["corpus"] == "not recorded"  # synth data, by a musicdet before providers
    assert lines["weights"] == f"sha256 {detector.weights_sha256()}"
    assert lines["loss"] == "ce"
    assert lines["front end"] == "log Mel + chroma, min-max block scaling, input_norm window"
    assert lines["epochs"] == "20; kept epoch 3, the best by val_auc (maximize)"
    assert lines["validation"] == ("AUC 0.9000, EER 0.1000; no threshold reached precision "
                                   "0.90 on raw frames")
    assert lines["threshold"] == "0.6250 (a rule)"
    assert lines["versions"].startswith("musicdet ")


@pytest.mark.parametrize("metrics, threshold, rule", [
    ({"val_threshold": 0.4}, 0.4, "older model file: precision 0.90 on raw validation frames, "
                                  "before the median filter detect applies"),
    ({}, 0.5, "older model file whose validation never reached precision 0.90: 0.5, not a "
              "validated point"),
])
def test_an_older_model_file_keeps_its_threshold_and_says_how_it_was_chosen(
    tmp_path, metrics, threshold, rule
):
    path = drop_keys(model_file(tmp_path / "old.pt", metrics), "operating_point",
                     "training_data")
    detector = load_model(path)
    assert detector.operating_point is None and detector.threshold == threshold
    assert detector.describe()["threshold"] == f"{threshold:.4f} ({rule})"
    assert detector.describe()["training data"] == "not recorded"
    assert detector.describe()["corpus"] == "not recorded"
