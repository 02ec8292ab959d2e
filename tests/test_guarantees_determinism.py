"""Determinism on CPU: the same config and seed give identical metrics and weights in two runs,
and a training killed (SIGKILL) mid-run then resumed equals an uninterrupted one.
(tests/test_train.py proves the in-process resume after an exception.)"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from guarantees import run_cli_process

from musicdet.config import RunConfig
from musicdet.modelfile import load_model
from musicdet.train import TrainResult, train


def tiny_config(cache: Path) -> RunConfig:
    return RunConfig.from_dict({
        "seed": 3,
        "data": {"synth_hours": 0.05, "cache_dir": str(cache), "validation_fraction": 0.34},
        "model": {"hidden_size": 16},
        "loss": {"type": "aaucsum", "gamma": 0.75, "lam": 0.001},
        "training": {"epochs": 3, "batch_size": 4, "sequences_per_epoch": 8},
    })


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> TrainResult:
    return train(tiny_config(cache), tmp_path_factory.mktemp("first"), progress=False)


def history(out: Path) -> list[dict[str, float]]:
    """history.json without the wall-clock seconds."""
    return [{**epoch, "seconds": 0.0} for epoch in json.loads((out / "history.json").read_text())]


def assert_same_model(a: Path, b: Path) -> None:
    first, second = load_model(a), load_model(b)
    assert {**first.metrics, "seconds": 0} == {**second.metrics, "seconds": 0}
    state = second.model.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in first.model.state_dict().items())


def test_two_runs_of_one_config_are_identical(tmp_path, cache, first_run):
    second = train(tiny_config(cache), tmp_path, progress=False)
    assert [r.epoch for r in second.history] == [1, 2, 3]
    assert history(tmp_path) == history(first_run.model_path.parent)
    assert_same_model(first_run.model_path, second.model_path)
    validation = [np.load(run.validation_path) for run in (first_run, second)]
    assert all(np.array_equal(validation[0][k], validation[1][k]) for k in validation[0].files)


@pytest.mark.slow
def test_training_killed_mid_run_then_resumed_equals_uninterrupted(tmp_path, cache, first_run):
    config = tmp_path / "run.yaml"
    tiny_config(cache).save(config)
    out = tmp_path / "run"
    child = run_cli_process("train", "--config", config, "--out", out)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pt").exists() and child.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    time.sleep(np.random.default_rng().uniform(0.0, 0.3))  # somewhere in epoch 2
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = len(json.loads((out / "history.json").read_text()))
    resumed = run_cli_process("train", "--config", config, "--out", out)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert history(out) == history(first_run.model_path.parent), f"killed after {killed_at}"
    assert_same_model(first_run.model_path, out / "model.pt")
