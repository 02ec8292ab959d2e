"""Multi-objective studies: one value per objective at the kept epoch, no intermediate values,
duplicates copying all values, the Pareto front in `best`, `status`, the MLflow parent run and
the plot, `export` needing --trial N.

The first tests drive the searcher by hand or build the study's trials directly (no Ray, no
training); the last runs a real two-objective study on local Ray with PostgreSQL storage.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial
from studyutil import assert_study_complete, child_runs, postgres_databases, write_spec

from musicdet.cli import main as musicdet_main
from musicdet.config import load_run_config
from musicdet.errors import CommandError
from search.cli import main as search_main
from search.export import chosen_trial, load_study
from search.runner import DeferredLoss, StudySearcher, run_study
from search.spec import StudySpec, load_spec
from search.study import DUPLICATE_OF, Heartbeat, open_storage, open_study
from search.trainable import OBJECTIVE, best_epoch, epoch_history, trial_dir

TWO = [{"metric": "val_auc"}, {"metric": "val_pauc_low_fpr"}]
LOW = f"{OBJECTIVE}_val_pauc_low_fpr"


@pytest.fixture
def searcher(tmp_path: Path):
    """A CE-only two-objective study (every trial is the same configuration) of 3 trials,
    3 epochs each, and its searcher, driven by hand as Ray Tune would."""
    spec = load_spec(write_spec(tmp_path, str(tmp_path / "cache"), training={"epochs": 3},
                                search={"losses": ["ce"], "objective": TWO},
                                storage={"url": f"sqlite:///{tmp_path}/optuna.db"}))
    storage = open_storage(spec.storage_url, spec)
    open_study(spec, storage, resume=False)
    heartbeat = Heartbeat(storage, 60.0)
    yield spec, StudySearcher(spec, storage, heartbeat, 0, tmp_path, DeferredLoss())
    heartbeat.stop()


def _result(epoch: int, auc: float, pauc: float) -> dict:
    return {"epoch": epoch, OBJECTIVE: auc, LOW: pauc, "val_auc": auc}


def _trials(spec: StudySpec) -> list[optuna.trial.FrozenTrial]:
    return load_study(spec).get_trials(deepcopy=False)


def test_a_trial_tells_one_value_per_objective_and_its_copies_repeat_them(
        searcher, tmp_path, capsys) -> None:
    spec, search = searcher
    search.suggest("ray-0")
    assert search.suggest("ray-1") is None  # trials 1 and 2 wait for 0 (same configuration)
    search.on_trial_result("ray-0", _result(1, 0.6, 0.02))
    search.on_trial_result("ray-0", _result(2, 0.7, 0.04))
    search.on_trial_complete("ray-0", _result(3, 0.75, 0.05))
    assert search.suggest("ray-1") == "FINISHED"
    study = load_study(spec)
    assert study.directions == [StudyDirection.MAXIMIZE] * 2
    assert study.metric_names == ["val_auc", "val_pauc_low_fpr"]
    first, *copies = study.trials
    assert (first.state, first.values, first.intermediate_values) == \
        (TrialState.COMPLETE, [0.75, 0.05], {})  # Optuna keeps none for several objectives
    for copy in copies:
        assert (copy.state, copy.values, copy.user_attrs[DUPLICATE_OF]) == \
            (TrialState.COMPLETE, [0.75, 0.05], 0)
    with pytest.raises(CommandError, match=r"several objectives.*--trial N \(its Pareto front: "
                                           r"trials 0\)$"):
        chosen_trial(spec, study)
    assert chosen_trial(spec, study, 2).number == 0  # a copy is exported as the trained one
    capsys.readouterr()
    out = tmp_path / "chosen.yaml"
    assert search_main(["export", str(tmp_path / "study.yaml"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "musicdet-search: error: study 'tiny' has several objectives, so no single best trial: "
        "choose one with --trial N (its Pareto front: trials 0)\n")
    assert not out.exists()


def test_a_trial_stopped_early_is_pruned_without_values(searcher) -> None:
    spec, search = searcher
    search.suggest("ray-0")
    search.on_trial_result("ray-0", _result(1, 0.6, 0.02))
    search.on_trial_complete("ray-0", _result(2, 0.62, 0.03))  # the scheduler stopped it
    assert search.suggest("ray-1") == "FINISHED"
    for trial in _trials(spec):
        assert (trial.state, trial.values, trial.user_attrs["epochs"]) == \
            (TrialState.PRUNED, None, 2)


def test_a_non_finite_later_objective_fails_the_trial_naming_it(searcher) -> None:
    spec, search = searcher
    search.suggest("ray-0")
    search.on_trial_complete("ray-0", _result(3, 0.7, math.nan))
    first = _trials(spec)[0]
    assert (first.state, first.user_attrs["fail_reason"]) == \
        (TrialState.FAIL, f"{LOW} is nan")


VALUES = {0: (0.70, 0.02), 1: (0.90, 0.01), 2: (0.80, 0.05), 3: (0.60, 0.03), 4: (0.85, 0.05)}
FRONT = [1, 4]  # 4 beats 0, 2 and 3 in both objectives; 1 has the best AUC


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    """A two-objective CE-only study whose trials have VALUES, plus one PRUNED trial."""
    spec_file = write_spec(tmp_path, str(tmp_path / "cache"), search={
        "losses": ["ce"], "objective": TWO}, storage={"url": f"sqlite:///{tmp_path}/o.db"})
    spec = load_spec(spec_file)
    study = open_study(spec, open_storage(spec.storage_url, spec), resume=False)
    for number in range(len(VALUES)):
        study.add_trial(create_trial(values=list(VALUES[number])))
    study.add_trial(create_trial(state=TrialState.PRUNED))
    return spec_file


def test_best_prints_the_pareto_front_and_its_plot_and_status_names_it(
        study_file: Path, tmp_path: Path, capsys) -> None:
    assert search_main(["best", str(study_file), "--top", "1"]) == 0  # the whole front
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Pareto front of study 'tiny' (val_auc maximized, "
                               "val_pauc_low_fpr maximized)")
    assert lines[1].split()[:3] == ["trial", "val_auc", "val_pauc_low_fpr"]
    assert [line.split()[:3] for line in lines[2:4]] == [
        ["1", "0.9000", "0.01000"], ["4", "0.8500", "0.05000"]]  # best AUC first
    plot = tmp_path / "runs" / "tiny" / "summary" / "pareto_front.png"
    assert lines[4] == f"plot: {plot}" and plot.stat().st_size > 10_000
    assert search_main(["status", str(study_file)]) == 0
    assert "Pareto front: 2 trials (1, 4)" in capsys.readouterr().out
    assert search_main(["export", str(study_file), "--out", str(tmp_path / "t0.yaml"),
                        "--trial", "0"]) == 0  # any COMPLETE trial, not only the front's
    assert capsys.readouterr().out.startswith(f"trial 0 → {tmp_path / 't0.yaml'}\n")


# ---------------------------------------------------------------- a real study


def _dominated(values: list[float], others: list[list[float]]) -> bool:
    """Whether some other point is at least as high in both objectives and higher in one."""
    return any(all(o >= v for o, v in zip(other, values, strict=True)) and other != values
               for other in others)


@pytest.mark.slow
def test_a_two_objective_study_on_postgresql_tracks_its_front_and_exports_a_point(
        tmp_path, monkeypatch, cache_dir, local_ray, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    n_trials = 4
    with postgres_databases(1) as (url,):
        spec_file = write_spec(tmp_path, cache_dir, search={
            "n_trials": n_trials, "sampler": "random", "objective": TWO,
            "losses": ["ce", "aauc", "apauc", "aaucsum"]}, storage={"url": url})
        spec = load_spec(spec_file)
        result = run_study(spec)
        study = load_study(spec)
        trials = study.trials
        client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
        assert_study_complete(trials, child_runs(client, result.experiment_id), n_trials, 2)
        assert study.directions == [StudyDirection.MAXIMIZE] * 2
        assert study.metric_names == ["val_auc", "val_pauc_low_fpr"]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        for trial in complete:  # the values describe the one model model.pt holds
            history = epoch_history(trial_dir(spec.workdir, trial.user_attrs.get(
                DUPLICATE_OF, trial.number)))
            kept = best_epoch(history, "val_auc")
            assert trial.values == [kept["val_auc"], kept["val_pauc_low_fpr"]]
            assert 0 < kept["val_pauc_low_fpr"] <= 0.1 and trial.intermediate_values == {}
        front = sorted(t.number for t in complete if DUPLICATE_OF not in t.user_attrs
                       and not _dominated(t.values, [o.values for o in complete]))
        assert result.front == front and result.best_value is None

        capsys.readouterr()
        assert search_main(["best", str(spec_file)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert sorted(int(line.split()[0]) for line in lines[2:2 + len(front)]) == front
        assert lines[2 + len(front)].startswith("plot: ")
        assert (spec.workdir / "summary" / "pareto_front.png").stat().st_size > 10_000
        assert search_main(["run", str(spec_file), "--resume"]) == 0  # nothing left to run
        assert f"Pareto front: trials {', '.join(map(str, front))}" in capsys.readouterr().out

        parent = client.search_runs([result.experiment_id], "tags.`musicdet.role` = 'study'")[0]
        assert parent.data.tags["pareto_trials"] == ",".join(map(str, front))
        assert {"trials.csv", "pareto_front.txt", "figures"} <= \
            {a.path for a in client.list_artifacts(parent.info.run_id)}
        figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
        assert {"figures/pareto_front.png", "figures/optimisation_history.png"} <= figures
        table = Path(client.download_artifacts(parent.info.run_id, "pareto_front.txt",
                                               str(tmp_path))).read_text()
        assert table.splitlines()[1:] == lines[1:1 + 1 + len(front)]  # best's very table

        chosen = front[-1]
        out = tmp_path / "chosen.yaml"
        assert search_main(["export", str(spec_file), "--trial", str(chosen), "--out",
                            str(out), "--register"]) == 0
        trained = load_run_config(trial_dir(spec.workdir, chosen) / "config.yaml")
        assert load_run_config(out).loss == trained.loss
        assert yaml.safe_load(out.read_text())["training"]["select_metric"] == "val_auc"
        champion = client.get_model_version_by_alias("musicdet-detector", "champion")
        assert champion.tags["optuna_trial"] == str(chosen)
        assert musicdet_main(["train", "--config", str(out), "--out",
                              str(tmp_path / "final")]) == 0
        assert (tmp_path / "final" / "model.pt").is_file()
