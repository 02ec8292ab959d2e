"""The driver's MLflow callback: a retried trial's run holds every epoch exactly once, also
those its dead worker checkpointed but never reported; its best_* summary is the epoch the
study's objective picks."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

from studyutil import write_spec

from search.runner import DeferredLoss, TrackingCallback
from search.spec import load_spec
from search.tracking import StudyTracker, study_settings
from search.trainable import (
    best_epoch,
    objective,
    objective_result,
    objective_values,
    trial_dir,
)


def test_a_retry_logs_the_epochs_its_dead_worker_checkpointed_but_never_reported(
        tmp_path, cache_dir) -> None:
    spec = load_spec(write_spec(tmp_path, cache_dir, name="backfill"))
    tracker = StudyTracker(study_settings(spec), spec.name)
    parent = tracker.create_parent(spec.to_dict())
    callback = TrackingCallback(tracker, parent, tmp_path, "val_auc", epochs=4, n_trials=1,
                                progress=False, lost=DeferredLoss())
    trial = SimpleNamespace(trial_id="t1", config={"loss": "ce", "origin": 0, "trial_number": 0})
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"epoch": 1, "val_auc": 0.6})
    # the worker then checkpointed epochs 2 and 3 and died before reporting epoch 3
    callback.on_trial_result(0, [], trial, {"epoch": 2, "val_auc": 0.7})
    folder = trial_dir(tmp_path, 0)
    folder.mkdir(parents=True)
    (folder / "history.json").write_text(json.dumps(
        [{"epoch": e, "val_auc": v, "val_eer": 0.3} for e, v in ((1, .6), (2, .7), (3, .8))]))

    retry = SimpleNamespace(trial_id="t2", config={"loss": "ce", "origin": 0, "trial_number": 1})
    callback.on_trial_start(0, [], retry)
    assert callback.runs["t2"] == callback.runs["t1"]  # the retry continues the same run
    history = tracker.client.get_metric_history(callback.runs["t2"], "val_auc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.6), (2, 0.7), (3, 0.8)]


HISTORY = [{"epoch": 1, "val_auc": 0.9, "val_eer": 0.30, "val_loss": 0.5, "seconds": 2.0},
           {"epoch": 2, "val_auc": 0.8, "val_eer": 0.20, "val_loss": 0.7, "seconds": 3.0},
           {"epoch": 3, "val_auc": 0.7, "val_eer": 0.20, "val_loss": 0.4, "seconds": 4.0}]


def test_the_best_epoch_follows_the_objective_in_its_direction() -> None:
    assert [best_epoch(HISTORY, m)["epoch"] for m in ("val_auc", "val_eer", "val_loss")] \
        == [1, 2, 3]  # a tie keeps the first epoch, as train keeps model.pt
    assert [objective(HISTORY[:2], m) for m in ("val_auc", "val_eer")] == [0.9, 0.2]
    assert best_epoch([], "val_eer") is None


def test_each_objective_is_its_value_at_the_epoch_the_first_keeps() -> None:
    metrics = ["val_eer", "val_auc", "training_seconds"]
    assert objective_values(HISTORY, metrics) == [0.2, 0.8, 5.0]  # epoch 2: a tie keeps it
    assert objective_values(HISTORY[:1], metrics) == [0.3, 0.9, 2.0]
    assert objective_result(HISTORY, metrics[:2]) == {"objective": 0.2,
                                                      "objective_val_auc": 0.8}
    assert all(math.isnan(v) for v in objective_values([], metrics))


def test_mlflow_best_summary_is_the_objectives_best_epoch(tmp_path, cache_dir) -> None:
    spec = load_spec(write_spec(tmp_path, cache_dir, name="eer",
                                search={"objective": {"metric": "val_eer"}}))
    tracker = StudyTracker(study_settings(spec), spec.name)
    callback = TrackingCallback(tracker, tracker.create_parent(spec.to_dict()), tmp_path,
                                spec.search.objective.metric, epochs=3, n_trials=1,
                                progress=False, lost=DeferredLoss())
    folder = trial_dir(tmp_path, 0)
    folder.mkdir(parents=True)
    (folder / "history.json").write_text(json.dumps(HISTORY))
    trial = SimpleNamespace(trial_id="t1", config={"loss": "ce", "origin": 0, "trial_number": 0},
                            last_result={"epoch": 3, "objective": 0.2})
    callback.on_trial_start(0, [], trial)
    run_id = callback.runs["t1"]
    callback.on_trial_complete(0, [], trial)
    best = tracker.client.get_run(run_id).data.metrics
    assert (best["best_epoch"], best["best_val_eer"], best["best_val_auc"]) == (2, 0.2, 0.8)
    assert best["best_training_seconds"] == 5.0  # epochs 1 and 2
