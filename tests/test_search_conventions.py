"""Optuna's conventions and no duplicate training: PRUNED trials, an intermediate value for
every epoch, the metric name, duplicates recorded from the trial they repeat.

The first tests drive the searcher by hand (no Ray, no training); the last runs a real study
with ASHA on local Ray.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from studyutil import assert_study_complete, child_runs, write_spec

from musicdet.errors import CommandError
from search.cli import main as search_main
from search.export import chosen_trial, load_study, top_trials
from search.runner import DeferredLoss, StudySearcher, run_study
from search.space import complete_params
from search.spec import StudySpec, load_spec
from search.study import DUPLICATE_OF, Heartbeat, open_storage, open_study, tally
from search.trainable import FAILED, OBJECTIVE, epoch_history, epoch_objectives, trial_dir


@pytest.fixture
def searcher(tmp_path: Path):
    """A CE-only study (every trial is the same configuration) of 3 trials, 3 epochs each,
    and its searcher, driven by hand as Ray Tune would."""
    spec = load_spec(write_spec(tmp_path, str(tmp_path / "cache"), training={"epochs": 3},
                                search={"losses": ["ce"]},
                                storage={"url": f"sqlite:///{tmp_path}/optuna.db"}))
    storage = open_storage(spec.storage_url, spec)
    open_study(spec, storage, resume=False)
    heartbeat = Heartbeat(storage, 60.0)
    recorded: list[int] = []
    found = StudySearcher(spec, storage, heartbeat, 0, tmp_path, DeferredLoss(),
                          on_duplicate=lambda trial, source, params: recorded.append(trial.number))
    found.recorded = recorded  # type: ignore[attr-defined]
    yield spec, found
    heartbeat.stop()


def _result(epoch: int, value: float) -> dict:
    return {"epoch": epoch, OBJECTIVE: value, "val_auc": value}


def _trials(spec: StudySpec) -> list[optuna.trial.FrozenTrial]:
    return load_study(spec).get_trials(deepcopy=False)


def test_a_duplicate_of_a_running_trial_waits_then_copies_its_result(
        searcher, tmp_path, capsys) -> None:
    spec, search = searcher
    assert search.suggest("ray-0")["loss"] == "ce"
    # trials 1 and 2 are the same configuration as running trial 0: they wait, no Ray trial
    assert search.suggest("ray-1") is None
    assert [t.state for t in _trials(spec)] == [TrialState.RUNNING] * 3
    search.on_trial_result("ray-0", _result(1, 0.6))
    search.on_trial_result("ray-0", _result(2, 0.7))
    search.on_trial_complete("ray-0", _result(3, 0.65 + 0.1))  # the last result: complete only
    assert search.suggest("ray-1") == "FINISHED"
    first, *copies = _trials(spec)
    assert first.state == TrialState.COMPLETE and first.value == 0.75
    assert first.intermediate_values == {1: 0.6, 2: 0.7, 3: 0.75}
    assert load_study(spec).metric_names == ["val_auc"]
    for copy in copies:
        assert copy.state == TrialState.COMPLETE and copy.value == 0.75
        assert copy.user_attrs[DUPLICATE_OF] == 0
        assert copy.intermediate_values == first.intermediate_values
    assert search.recorded == [1, 2]
    assert tally(_trials(spec)).finished == 3
    assert [r.number for r in top_trials(spec, load_study(spec))] == [0]  # copies not listed
    assert chosen_trial(spec, load_study(spec), 2).number == 0  # exported as the trained one
    capsys.readouterr()
    assert search_main(["export", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "b.yaml"),
                        "--trial", "2"]) == 0
    assert capsys.readouterr().out.startswith(
        "trial 2 is a duplicate of trial 0 (same configuration)\ntrial 0 → ")


def test_a_trial_stopped_early_is_pruned_and_so_are_its_duplicates(searcher) -> None:
    spec, search = searcher
    search.suggest("ray-0")
    search.on_trial_result("ray-0", _result(1, 0.6))
    search.on_trial_complete("ray-0", _result(2, 0.62))  # the scheduler stopped it at epoch 2
    assert search.suggest("ray-1") == "FINISHED"  # trials 1 and 2: copies of a pruned trial
    trials = _trials(spec)
    assert [t.state for t in trials] == [TrialState.PRUNED] * 3
    for trial in trials:
        assert trial.intermediate_values == {1: 0.6, 2: 0.62}
        assert trial.value == 0.62  # Optuna's convention: the last intermediate value
        assert trial.user_attrs["epochs"] == 2
    with pytest.raises(CommandError, match="trial 0 of study 'tiny' is PRUNED .* after 2 of 3"):
        chosen_trial(spec, load_study(spec), 0)
    assert top_trials(spec, load_study(spec)) == []


def test_a_duplicate_of_a_trial_that_failed_is_trained_after_all(searcher) -> None:
    spec, search = searcher
    search.suggest("ray-0")
    assert search.suggest("ray-1") is None  # 1 and 2 wait for 0
    search.on_trial_complete("ray-0", {**_result(1, float("-inf")), FAILED: "NonFiniteLossError"})
    assert search.suggest("ray-1")["loss"] == "ce"  # trial 1's retry trains
    states = [(t.number, t.state, t.user_attrs.get("retry_of")) for t in _trials(spec)]
    assert states[:3] == [(0, TrialState.FAIL, None), (1, TrialState.FAIL, None),
                          (2, TrialState.FAIL, None)]
    assert states[3:] == [(3, TrialState.RUNNING, 1), (4, TrialState.WAITING, 2)]


@pytest.mark.slow
def test_a_study_with_asha_prunes_records_every_epoch_and_trains_no_configuration_twice(
        tmp_path, monkeypatch, cache_dir, local_ray) -> None:
    monkeypatch.chdir(tmp_path)
    epochs, n_trials = 3, 6
    # TPE (its random start-up) proposes apauc, aaucsum, aauc, aauc, apauc, aauc, ...: aauc
    # (δ fixed) is one configuration
    spec = load_spec(write_spec(
        tmp_path, cache_dir, training={"epochs": epochs},
        search={"n_trials": n_trials, "losses": ["aauc", "apauc", "aaucsum"]},
        pruner={"type": "asha", "grace_epochs": 1}))
    result = run_study(spec)
    study = load_study(spec)
    trials = study.trials
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = child_runs(client, result.experiment_id)
    assert_study_complete(trials, runs, n_trials, epochs)

    trained = [t for t in trials if t.state.is_finished() and DUPLICATE_OF not in t.user_attrs]
    copies = [t for t in trials if DUPLICATE_OF in t.user_attrs]
    configs = {json.dumps(complete_params(spec.search, t.params), sort_keys=True)
               for t in trained}
    assert len(configs) == len(trained) == n_trials - len(copies) and copies
    for copy in copies:
        source = trials[copy.user_attrs[DUPLICATE_OF]]
        assert (copy.state, copy.value, copy.intermediate_values) == \
            (source.state, source.value, source.intermediate_values)
    pruned = [t for t in trained if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["epochs"] < epochs for t in pruned)
    assert all(t.user_attrs["epochs"] == epochs for t in trained if t.state == TrialState.COMPLETE)
    for trial in trained:
        history = epoch_history(trial_dir(spec.workdir, trial.number))
        assert list(trial.intermediate_values) == list(range(1, trial.user_attrs["epochs"] + 1))
        assert trial.intermediate_values == epoch_objectives(history, "val_auc")
    assert study.metric_names == ["val_auc"]
    assert study.best_trial.state == TrialState.COMPLETE
    assert result.best_trial == study.best_trial.number

    tags = {int(r.data.tags["optuna_trial_number"]): r.data.tags for r in runs}
    assert {n for n, t in tags.items() if t.get("optuna_state") == "PRUNED"} == \
        {t.number for t in trials if t.state == TrialState.PRUNED}
    assert {n: int(t[DUPLICATE_OF]) for n, t in tags.items() if DUPLICATE_OF in t} == \
        {t.number: t.user_attrs[DUPLICATE_OF] for t in copies}
    assert run_study(spec, resume=True).finished == n_trials  # nothing left to run
    assert len(load_study(spec).trials) == len(trials)
