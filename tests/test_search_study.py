"""Real studies: local Ray, real (tiny) training, Optuna on SQLite and PostgreSQL, MLflow.

Each test runs in its own folder (runs/ under tmp_path); the synthetic corpus and its
features are shared through one cache. Faults (killed workers and drivers, dropped database
connections, failing trials, concurrent drivers) are in test_faults_*.py.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from studyutil import (
    child_runs,
    free_port,
    postgres_databases,
    rest,
    start_driver,
    wait_for,
    write_spec,
)

from musicdet.config import load_run_config
from musicdet.metrics import auc
from musicdet.train import train
from search.cli import main as search_main
from search.export import export_best, load_study
from search.runner import run_study
from search.spec import load_spec
from search.study import tally
from search.trainable import trial_dir

pytestmark = pytest.mark.slow


def test_local_study_tracks_every_trial_and_exports_a_reproducible_config(
        tmp_path, monkeypatch, cache_dir, local_ray, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path, cache_dir))
    result = run_study(spec)
    assert result.finished == 3
    study = load_study(spec)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3

    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    experiment = client.get_experiment(result.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = client.search_runs([experiment.experiment_id], "tags.`musicdet.role` = 'study'")[0]
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "figures"} <= parent_files
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/optimisation_history.png" in figures
    runs = child_runs(client, experiment.experiment_id)
    assert len(runs) == 3
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["status"] == "FINISHED" and run.info.status == "FINISHED"
        number = int(run.data.tags["optuna_trial_number"])
        assert run.data.tags["loss_type"] == study.trials[number].params.get("loss", "ce")
        assert run.data.tags["ray_trial_id"]
        params = run.data.params
        assert set(params) == {"loss", "alpha", "beta", "gamma", "lam", "delta"}
        inactive = {"ce": 5, "aauc": 4, "apauc": 2, "aaucsum": 2}[params["loss"]]
        assert list(params.values()).count("NA") == inactive
        history = client.get_metric_history(run.info.run_id, "val_auc")
        assert [m.step for m in history] == [1, 2]
        assert run.data.metrics["best_val_auc"] == max(m.value for m in history)
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"roc.png", "scores.png", "config.yaml", "history.json"} <= files
        assert client.get_run(run.info.run_id).outputs.model_outputs  # its pyfunc model

    number, path = export_best(spec, tmp_path / "best.yaml", register=True)
    assert number == study.best_trial.number
    retrained = train(load_run_config(path), tmp_path / "retrain", progress=False)
    assert retrained.best.val_auc == pytest.approx(study.best_value, abs=0.005)
    champion = client.get_model_version_by_alias("musicdet-detector", "champion")
    assert champion.run_id in {r.info.run_id for r in runs}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/runs/mlflow.db")
    served = mlflow.pyfunc.load_model("models:/musicdet-detector@champion")
    assert len(served.predict({"audio": np.zeros(16000)})["music_prob"][0]) == 101

    capsys.readouterr()
    assert search_main(["best", str(tmp_path / "study.yaml")]) == 0
    table = capsys.readouterr().out
    assert f"{study.best_value:.4f}" in table.splitlines()[1]
    assert search_main(["status", str(tmp_path / "study.yaml")]) == 0
    assert "COMPLETE 3" in capsys.readouterr().out
    assert search_main(["run", str(tmp_path / "study.yaml")]) == 2  # exists: needs --resume


def test_a_study_samples_augment_options_into_trials_mlflow_and_the_export(
        tmp_path, monkeypatch, cache_dir, local_ray) -> None:
    monkeypatch.chdir(tmp_path)
    augment = {"gain_db": {"low": 0.0, "high": 6.0}, "time_masks": {"low": 0, "high": 2}}
    spec = load_spec(write_spec(tmp_path, cache_dir, search={
        "sampler": "random", "n_trials": 2, "losses": ["ce"], "augment": augment}))
    result = run_study(spec)
    assert result.finished == 2
    study = load_study(spec)
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = child_runs(client, result.experiment_id)
    assert len(runs) == 2
    for run in runs:
        trial = study.trials[int(run.data.tags["optuna_trial_number"])]
        assert run.data.params["augment.gain_db"] == str(trial.params["augment.gain_db"])
        assert run.data.params["augment.time_masks"] == str(trial.params["augment.time_masks"])
        trained = load_run_config(trial_dir(spec.workdir, trial.number) / "config.yaml").augment
        assert (trained.gain_db, trained.time_masks) == (trial.params["augment.gain_db"],
                                                         trial.params["augment.time_masks"])
    _, path = export_best(spec, tmp_path / "best.yaml")
    exported = load_run_config(path).augment
    assert exported.gain_db == study.best_trial.params["augment.gain_db"]
    assert exported.time_masks == study.best_trial.params["augment.time_masks"]


def test_a_study_validated_on_another_set_ranks_on_it_and_logs_the_split_as_train_val(
        tmp_path, monkeypatch, cache_dir, local_ray, capsys) -> None:
    """base.validation: a synthetic corpus of another seed. Every epoch logs val_* (that set)
    and train_val_* (the data's split); the objective is val_auc on that set; the parent run
    holds the top trials' comparison that `best` prints."""
    monkeypatch.chdir(tmp_path)
    other = {"synth_hours": 0.02, "synth_seed": 7, "cache_dir": cache_dir}
    spec = load_spec(write_spec(tmp_path, cache_dir, validation=other, search={
        "sampler": "random", "n_trials": 2, "losses": ["ce", "aauc"]}))
    result = run_study(spec)
    assert result.finished == 2
    study = load_study(spec)
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = child_runs(client, result.experiment_id)
    for run in runs:
        trial = study.trials[int(run.data.tags["optuna_trial_number"])]
        for metric in ("val_auc", "train_val_auc", "train_val_eer", "train_val_loss"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2]
        with np.load(trial_dir(spec.workdir, trial.number) / "validation.npz") as saved:
            assert saved["files"].tolist() == ["prog-0000"]
            external = auc(saved["labels"], saved["scores"], saved["mask"])
        assert trial.value == pytest.approx(external, abs=1e-12)
        assert run.data.metrics["best_val_auc"] == trial.value
        assert run.data.metrics["best_train_val_auc"] != pytest.approx(trial.value, abs=1e-6)
    parent = client.search_runs([result.experiment_id], "tags.`musicdet.role` = 'study'")[0]
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"significance.txt", "significance.json"} <= files
    stored = Path(client.download_artifacts(parent.info.run_id, "significance.txt",
                                            str(tmp_path))).read_text()
    assert "blocks of 1000 frames in 1 validation file" in stored
    capsys.readouterr()
    assert search_main(["best", str(tmp_path / "study.yaml")]) == 0
    assert capsys.readouterr().out.endswith(f"\n{stored}")


# ---------------------------------------------------------------- PostgreSQL, MLflow server


@pytest.fixture
def databases():
    with postgres_databases(2) as urls:
        yield urls


def test_two_drivers_on_postgresql_then_mlflow_server_rest(
        tmp_path, cache_dir, databases) -> None:
    optuna_url, mlflow_url = databases
    path = write_spec(tmp_path, cache_dir, name="shared", search={"n_trials": 5},
                      storage={"url": optuna_url},
                      mlflow={"tracking_uri": mlflow_url,
                              "artifact_location": str(tmp_path / "artifacts")})
    drivers = [start_driver(path, "--resume", "--num-cpus", "1", cwd=tmp_path)
               for _ in range(2)]
    outputs = [d.communicate(timeout=400) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs

    study = load_study(load_spec(path))
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert tally(study.trials).finished == 5
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                               mlflow_url, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return urllib.request.urlopen(f"{base}/health", timeout=2).status == 200
            except OSError:
                return False
        wait_for(up, 90, "the MLflow server")
        experiment = rest(base, "experiments/get-by-name?experiment_name=musicdet-shared")[
            "experiment"]
        runs = rest(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                          "filter": "tags.`musicdet.role` = 'trial'"})["runs"]
        assert len(runs) == 5
        origins = {next(t["value"] for t in r["data"]["tags"] if t["key"] ==
                        "musicdet.trial_origin") for r in runs}
        assert len(origins) == 5
        trained = next(r for r in runs  # a duplicate's run has no curves
                       if all(t["key"] != "duplicate_of" for t in r["data"]["tags"]))
        run_id = trained["info"]["run_id"]
        history = rest(base, f"metrics/get-history?run_id={run_id}&metric_key=val_auc")
        assert [m["step"] for m in history["metrics"]] == [1, 2]
        params = {p["key"]: p["value"] for p in trained["data"]["params"]}
        assert set(params) == {"loss", "alpha", "beta", "gamma", "lam", "delta"}
        files = {f["path"] for f in rest(base, f"artifacts/list?run_id={run_id}")["files"]}
        assert {"roc.png", "config.yaml"} <= files
        assert trained["outputs"]["model_outputs"]  # the trial's pyfunc LoggedModel
    finally:
        server.terminate()
        server.wait(timeout=30)
