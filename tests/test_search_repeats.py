"""Repeated seeds (`search.repeats`): the aggregate objective, the seeds' folders, their
concurrency, MLflow's mean ± sd and per-seed values, ASHA on the aggregate, export.

The first tests are pure functions and bad input; the studies run on local Ray (2 CPUs) with
real training and MLflow on SQLite.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import fmean, stdev

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from scipy import stats
from studyutil import assert_study_complete, child_runs, write_spec

from musicdet.config import load_run_config
from musicdet.train import train
from search.cli import main as search_main
from search.export import export_best, load_study
from search.repeats import aggregate, mean_sd, metric_name, parallel_seeds
from search.runner import run_study
from search.spec import ResourcesSpec, load_spec
from search.study import DUPLICATE_OF
from search.trainable import seed_dir, trial_dir, worker_info


def seed_histories(workdir: Path, number: int, seeds: list[int]) -> dict[int, list[dict]]:
    """Each seed's history.json in trial ``number``'s folder, by seed."""
    folder = trial_dir(workdir, number)
    return {s: json.loads((seed_dir(folder, s) / "history.json").read_text()) for s in seeds}


def best_so_far(history: list[dict], epoch: int) -> float:
    return max(e["val_auc"] for e in history[:epoch])


def lower_bound(values: list[float]) -> float:
    """One-sided 95 % Student-t lower bound of the mean (written out here, not reused)."""
    k = len(values)
    return fmean(values) - stats.t.ppf(0.95, k - 1) * stdev(values) / math.sqrt(k)


def test_the_aggregate_is_the_mean_or_the_pessimistic_end_of_its_interval() -> None:
    values = [0.70, 0.74, 0.78]
    assert aggregate(values, "maximize", "mean") == pytest.approx(0.74)
    half = 2.919986 * 0.04 / math.sqrt(3)  # t(0.95, 2) · sd / √k
    assert aggregate(values, "maximize", "lcb") == pytest.approx(0.74 - half, abs=1e-6)
    assert aggregate(values, "minimize", "lcb") == pytest.approx(0.74 + half, abs=1e-6)
    assert math.isnan(aggregate([0.7, math.nan], "maximize", "lcb"))


def test_mean_sd_gives_each_metric_its_mean_sd_and_per_seed_values() -> None:
    row = mean_sd({3: {"val_auc": 0.6, "lr": 1e-3}, 4: {"val_auc": 0.8, "lr": 1e-3, "x": 1.0}})
    assert row == pytest.approx({"val_auc": 0.7, "val_auc_sd": stdev([0.6, 0.8]),
                                 "val_auc_seed3": 0.6, "val_auc_seed4": 0.8, "lr": 1e-3,
                                 "lr_sd": 0.0, "lr_seed3": 1e-3, "lr_seed4": 1e-3})
    assert {metric_name(k) for k in row} == {"val_auc", "lr"}
    assert metric_name("val_auc_seed-2") == "val_auc"


@pytest.mark.parametrize(("cpus", "gpus", "repeats", "cluster", "expected"), [
    (1, 0, 3, {"CPU": 2.0}, 2),  # 2 seeds at once, the third after
    (1, 0, 2, {"CPU": 16.0}, 2),  # never more than the seeds
    (2, 0, 3, {"CPU": 2.0}, 1),
    (4, 0, 3, {"CPU": 2.0}, 1),  # at least one (Ray waits for a node that holds it)
    (1, 0.5, 4, {"CPU": 8.0, "GPU": 1.0}, 2),
])
def test_seeds_run_at_once_as_far_as_the_cluster_holds_them(
        cpus: float, gpus: float, repeats: int, cluster: dict, expected: int) -> None:
    assert parallel_seeds(ResourcesSpec(cpus=cpus, gpus=gpus), repeats, cluster) == expected


@pytest.mark.parametrize(("search", "expected"), [
    ({"repeats": 0}, "search.repeats: `repeats >= 1 (seeds per configuration)` must hold, "
                     "but got 0"),
    ({"repeats": 1, "objective": {"aggregate": "lcb"}},
     "search.objective.aggregate: `aggregate lcb only with repeats >= 2"),
])
def test_bad_repeats_are_one_line_and_start_nothing(tmp_path, capsys, search: dict,
                                                     expected: str) -> None:
    spec = write_spec(tmp_path, str(tmp_path / "cache"), search=search)
    assert search_main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_study_with_three_seeds_ranks_by_their_lcb_runs_them_at_once_and_tracks_each(
        tmp_path, monkeypatch, cache_dir, local_ray) -> None:
    monkeypatch.chdir(tmp_path)
    seeds, epochs = [5, 6, 7], 2
    spec = load_spec(write_spec(
        tmp_path, cache_dir, seed=5, training={"epochs": epochs, "sequences_per_epoch": 32},
        search={"n_trials": 2, "repeats": 3, "losses": ["ce", "aaucsum"],
                "objective": {"metric": "val_auc", "aggregate": "lcb"}}))
    result = run_study(spec, out=None)
    study = load_study(spec)
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = {int(r.data.tags["optuna_trial_number"]): r
            for r in child_runs(client, result.experiment_id)}
    assert_study_complete(study.trials, list(runs.values()), 2, epochs)

    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        histories = seed_histories(spec.workdir, trial.number, seeds)
        assert all(len(h) == epochs for h in histories.values())
        best = [best_so_far(histories[s], epochs) for s in seeds]
        assert len(set(best)) == 3, "the seeds trained alike"
        assert trial.value == pytest.approx(lower_bound(best), abs=1e-9)
        assert trial.intermediate_values == pytest.approx(
            {e: lower_bound([best_so_far(histories[s], e) for s in seeds])
             for e in range(1, epochs + 1)}, abs=1e-9)

        # two of the three seeds ran at once (two CPUs); the third in the bundle freed first
        when = {s: worker_info(seed_dir(trial_dir(spec.workdir, trial.number), s))
                for s in seeds}
        assert all(w["seed"] == s and w["ended"] > w["started"] for s, w in when.items())
        assert max(when[5]["started"], when[6]["started"]) < \
            min(when[5]["ended"], when[6]["ended"])
        assert when[7]["started"] >= min(when[5]["ended"], when[6]["ended"]) - 0.5

        run = runs[trial.number]
        metrics = run.data.metrics
        assert metrics["best_val_auc"] == pytest.approx(fmean(best))
        assert metrics["best_val_auc_sd"] == pytest.approx(stdev(best))
        for seed, value in zip(seeds, best, strict=True):
            assert metrics[f"best_val_auc_seed{seed}"] == pytest.approx(value)
        curve = client.get_metric_history(run.info.run_id, "val_auc")
        assert [m.step for m in curve] == [1, 2]
        assert {m.step: m.value for m in curve} == pytest.approx(
            {e: fmean(histories[s][e - 1]["val_auc"] for s in seeds) for e in (1, 2)})
        seed_curve = client.get_metric_history(run.info.run_id, "val_auc_seed6")
        assert [m.value for m in seed_curve] == pytest.approx(
            [e["val_auc"] for e in histories[6]])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_auc_sd")] == \
            [1, 2]
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"roc.png", "config.yaml", "history.json", "seeds"} <= files
        models = client.search_logged_models(
            [result.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
        assert len(models) == 1  # the kept seed's model, as a pyfunc model of the run
        assert {a.path for a in client.list_artifacts(run.info.run_id, "seeds")} == \
            {f"seeds/seed-{s}" for s in seeds}

    # the kept model is the first seed's (base.seed): what the exported config reproduces
    number, path = export_best(spec, tmp_path / "best.yaml", register=True)
    assert number == study.best_trial.number
    histories = seed_histories(spec.workdir, number, seeds)
    retrained = train(load_run_config(path), tmp_path / "retrain", progress=False)
    assert retrained.best.val_auc == pytest.approx(best_so_far(histories[5], epochs), abs=0.005)
    champion = client.get_model_version_by_alias("musicdet-detector", "champion")
    assert champion.run_id == runs[number].info.run_id


@pytest.mark.slow
def test_asha_prunes_on_the_seeds_mean_cancels_their_tasks_and_duplicates_copy_it(
        tmp_path, monkeypatch, cache_dir, local_ray) -> None:
    monkeypatch.chdir(tmp_path)
    epochs, n_trials, seeds = 4, 6, [0, 1]
    spec = load_spec(write_spec(
        tmp_path, cache_dir, training={"epochs": epochs, "sequences_per_epoch": 48},
        search={"n_trials": n_trials, "repeats": 2, "losses": ["aauc", "apauc", "aaucsum"]},
        pruner={"type": "asha", "grace_epochs": 1}))
    result = run_study(spec, out=None)
    trials = load_study(spec).trials
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    assert_study_complete(trials, child_runs(client, result.experiment_id), n_trials, epochs)

    trained = [t for t in trials if DUPLICATE_OF not in t.user_attrs]
    copies = [t for t in trials if DUPLICATE_OF in t.user_attrs]
    assert copies, "TPE proposed no aauc twice"
    for copy in copies:
        source = trials[copy.user_attrs[DUPLICATE_OF]]
        assert (copy.state, copy.value, copy.intermediate_values) == \
            (source.state, source.value, source.intermediate_values)
    pruned = [t for t in trained if t.state == TrialState.PRUNED]
    assert pruned, "ASHA stopped no trial"
    for trial in trained:
        ran = trial.user_attrs["epochs"]
        histories = seed_histories(spec.workdir, trial.number, seeds)
        assert trial.intermediate_values == pytest.approx(
            {e: fmean(best_so_far(histories[s], e) for s in seeds) for e in range(1, ran + 1)})
        if trial.state == TrialState.PRUNED:  # its seed tasks were cancelled, not run out
            assert all(len(h) < epochs for h in histories.values()), (trial.number, ran)
            assert all("ended" not in worker_info(seed_dir(trial_dir(spec.workdir,
                                                                      trial.number), s))
                       for s in seeds)
        else:
            assert trial.value == pytest.approx(
                fmean(best_so_far(histories[s], epochs) for s in seeds))
