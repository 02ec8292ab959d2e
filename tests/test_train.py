"""Training end to end on a tiny synthetic corpus: files, schedule, resume, failures, learning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musicdet.config import RunConfig, apply_overrides
from musicdet.losses import LossConfig
from musicdet.modelfile import load_model
from musicdet.train import NonFiniteLossError, PreparedData, learning_rate, prepare_data, train


def tiny_config(cache: Path, **loss: object) -> RunConfig:
    return RunConfig.from_dict(
        {
            "seed": 1,
            "data": {"synth_hours": 0.05, "cache_dir": str(cache), "validation_fraction": 0.34},
            "model": {"hidden_size": 16, "num_layers": 2},
            "loss": loss or {"type": "ce"},
            "training": {"epochs": 2, "batch_size": 4, "sequences_per_epoch": 8},
        }
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def data(cache: Path) -> PreparedData:
    return prepare_data(tiny_config(cache), progress=False)


def test_prepare_data_splits_by_file(data: PreparedData) -> None:
    assert len(data.train) >= 1 and len(data.validation) >= 1
    assert not {e.name for e in data.train} & {e.name for e in data.validation}
    for example in data.train + data.validation:
        assert example.features.shape == (example.frames, 140)
        assert example.features.dtype == np.float32
        assert set(np.unique(example.labels)) <= {0.0, 1.0}


def test_learning_rate_decays_from_start_to_end() -> None:
    training = RunConfig.from_dict({"training": {"epochs": 20}}).training
    assert learning_rate(1, training) == pytest.approx(1e-3)
    assert learning_rate(20, training) == pytest.approx(1e-4)
    ratios = [learning_rate(e + 1, training) / learning_rate(e, training) for e in range(1, 20)]
    assert np.allclose(ratios, ratios[0])


def test_train_writes_a_self_contained_model(tmp_path: Path, cache: Path, data: PreparedData):
    reports = []
    result = train(tiny_config(cache), tmp_path, data=data, on_epoch=reports.append,
                   progress=False)
    assert [r.epoch for r in reports] == [1, 2]
    assert reports[0].lr == pytest.approx(1e-3) and reports[1].lr == pytest.approx(1e-4)
    assert 0.0 <= result.best.val_auc <= 1.0
    assert result.best.val_auc == max(r.val_auc for r in reports)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1.0, 2.0]
    detector = load_model(result.model_path)
    assert detector.config == tiny_config(cache)
    assert detector.metrics["val_auc"] == pytest.approx(result.best.val_auc)
    probabilities = detector.probabilities(data.validation[0].features)
    assert probabilities.shape == (data.validation[0].frames,)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    saved = np.load(result.validation_path)
    assert saved["scores"].shape == saved["labels"].shape == saved["mask"].shape


class Interrupt(Exception):
    pass


def stop_after_first_epoch(report) -> None:
    if report.epoch == 1:
        raise Interrupt


def test_resumed_training_equals_uninterrupted(tmp_path: Path, cache: Path, data: PreparedData):
    config = tiny_config(cache, type="aaucsum", gamma=0.75, lam=0.001)
    whole = train(config, tmp_path / "whole", data=data, progress=False)
    with pytest.raises(Interrupt):
        train(config, tmp_path / "split", data=data, on_epoch=stop_after_first_epoch,
              progress=False)
    resumed = train(config, tmp_path / "split", data=data, progress=False)
    assert [r.metrics() | {"seconds": 0} for r in resumed.history] == [
        r.metrics() | {"seconds": 0} for r in whole.history
    ]
    a = load_model(whole.model_path).model.state_dict()
    b = load_model(resumed.model_path).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_another_config_is_refused(tmp_path: Path, cache: Path, data):
    train(tiny_config(cache), tmp_path, data=data, progress=False)
    other = apply_overrides(tiny_config(cache), ["training.epochs=3"])
    with pytest.raises(ValueError, match="checkpoint of a different config"):
        train(other, tmp_path, data=data, progress=False)


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path: Path, cache: Path, data, monkeypatch):
    from musicdet import train as train_module

    real = train_module.build_loss

    def poisoned(config: LossConfig):
        loss = real(config)

        class NaNLoss:
            degenerate_batches = 0

            def __call__(self, scores, labels, mask=None):
                return loss(scores, labels, mask) * float("nan")

        return NaNLoss()

    monkeypatch.setattr(train_module, "build_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1: loss is nan"):
        train(tiny_config(cache), tmp_path, data=data, progress=False)


def test_cli_reports_non_finite_loss_in_one_line(tmp_path: Path, cache: Path, monkeypatch, capsys):
    from musicdet import train as train_module
    from musicdet.cli import main

    def diverge(*args, **kwargs):
        raise NonFiniteLossError("epoch 3, step 7: loss is nan")

    monkeypatch.setattr(train_module, "train", diverge)
    tiny_config(cache).save(tmp_path / "run.yaml")
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "musicdet: training failed: epoch 3, step 7: loss is nan\n"
