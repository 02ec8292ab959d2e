"""The driver's MLflow callback: a retried trial's run holds every epoch exactly once, also
those its dead worker checkpointed but never reported."""

from __future__ import annotations

import json
from types import SimpleNamespace

from studyutil import write_spec

from search.runner import DeferredLoss, TrackingCallback
from search.spec import load_spec
from search.tracking import StudyTracker, load_settings
from search.trainable import trial_dir


def test_a_retry_logs_the_epochs_its_dead_worker_checkpointed_but_never_reported(
        tmp_path, monkeypatch, cache_dir) -> None:
    monkeypatch.chdir(tmp_path)  # the spec's MLflow store is runs/mlflow.db
    spec = load_spec(write_spec(tmp_path, cache_dir, name="backfill"))
    tracker = StudyTracker(load_settings(spec.mlflow), spec.name)
    parent = tracker.create_parent(spec.to_dict())
    callback = TrackingCallback(tracker, parent, tmp_path, epochs=4, n_trials=1, progress=False,
                                lost=DeferredLoss())
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
