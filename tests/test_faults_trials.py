"""Faults inside trials, in one real study (local Ray, real training, MLflow on SQLite):
a non-finite loss, a trial that raises, and a worker process SIGKILLed mid-epoch.

Each ends as FailureConfig says (failed with its reason, or retried from its checkpoint) while
the other trials are unaffected and the study ends with exactly the requested trials. With
``search.repeats`` 2 the faults hit the first seed of each trial (the worker killed is that
seed's task worker) and end the trial all the same; the retry resumes both seeds.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from studyutil import assert_study_complete, child_runs, wait_for, write_spec

from search.export import load_study
from search.runner import run_study
from search.spec import load_spec
from search.study import FAIL_REASON
from search.trainable import seed_dir, trial_dir, worker_info

pytestmark = pytest.mark.slow
GRID = [
    {"type": "aaucsum", "gamma": 0.75, "lam": 1e39},  # trial 0: λ overflows, the loss is inf
    {"type": "ce"},  # trial 1: raises (its folder holds a corrupt checkpoint)
    {"type": "aauc"},  # trial 2: its worker process is killed during epoch 2
]
EPOCHS = 3


def kill_worker_mid_epoch(folder: Path, killed: list[int]) -> None:
    """Once the trial in ``folder`` finished epoch 1, SIGKILL its worker process."""
    def epochs_done() -> int:
        path = folder / "history.json"
        return len(json.loads(path.read_text())) if path.exists() else 0

    wait_for(lambda: epochs_done() >= 1, 300, "epoch 1 of the trial to kill")
    assert epochs_done() < EPOCHS, "the trial ended before it could be killed"
    pid = worker_info(folder)["pid"]
    os.kill(pid, signal.SIGKILL)
    killed.append(pid)


def training_folder(workdir: Path, number: int, repeats: int) -> Path:
    """Where trial ``number`` trains: its folder, or its first seed's (seed 0) if repeated."""
    folder = trial_dir(workdir, number)
    return folder if repeats == 1 else seed_dir(folder, 0)


@pytest.mark.parametrize("repeats", [1, 2])
def test_nan_loss_raising_trial_and_killed_worker_leave_the_study_whole(
        tmp_path, monkeypatch, cache_dir, local_ray, repeats: int) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(
        tmp_path, cache_dir, name="faults", training={"epochs": EPOCHS, "sequences_per_epoch": 48},
        search={"sampler": "grid", "grid": GRID, "n_trials": 3, "repeats": repeats},
        resources={"max_failures": 1}))
    corrupt = training_folder(spec.workdir, 1, repeats) / "checkpoint.pt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"not a checkpoint")
    killed: list[int] = []
    victim = training_folder(spec.workdir, 2, repeats)
    killer = threading.Thread(target=kill_worker_mid_epoch, args=(victim, killed), daemon=True)
    killer.start()

    result = run_study(spec, out=None)
    killer.join(timeout=1)
    assert killed, "the worker was not killed"
    trials = load_study(spec).trials
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = {r.data.params["loss"]: r for r in child_runs(client, result.experiment_id)}
    assert result.finished == 3
    assert_study_complete(trials, list(runs.values()), 3, EPOCHS)

    nan, raised, retried = trials
    assert nan.state == TrialState.FAIL
    assert nan.user_attrs[FAIL_REASON].startswith("NonFiniteLossError")
    assert "epoch 1" in runs["aaucsum"].data.tags["fail_reason"]

    assert raised.state == TrialState.FAIL
    assert raised.user_attrs[FAIL_REASON].startswith("ValueError: ")
    assert "not a readable checkpoint" in raised.user_attrs[FAIL_REASON]
    assert "not a readable checkpoint" in runs["ce"].data.tags["fail_reason"]

    assert retried.state == TrialState.COMPLETE and retried.user_attrs["epochs"] == EPOCHS
    assert worker_info(victim)["pid"] != killed[0]  # a new worker resumed
    history = client.get_metric_history(runs["aauc"].info.run_id, "val_auc")
    assert sorted({m.step for m in history}) == [1, 2, 3]
    assert list(retried.intermediate_values) == [1, 2, 3]  # step = epoch, across the restart
    assert retried.user_attrs["ray_node_id"] == runs["aauc"].data.tags["ray_node_id"]
