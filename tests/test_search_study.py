"""Real studies: local Ray, real (tiny) training, Optuna on SQLite and PostgreSQL, MLflow.

Each test runs in its own folder (runs/ under tmp_path); the synthetic corpus and its
features are shared through one cache.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import optuna
import psycopg
import pytest
import ray
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from musicdet.config import load_run_config
from musicdet.train import train
from search.cli import main as search_main
from search.export import export_best, load_study
from search.runner import FAIL_REASON, run_study, tally
from search.spec import load_spec

pytestmark = pytest.mark.slow
DRIVER = [sys.executable, "-c", "from search.cli import main; raise SystemExit(main())"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def write_spec(folder: Path, cache_dir: str, **sections) -> Path:
    spec = {
        "name": "tiny",
        "seed": 0,
        "data": {"synth_hours": 0.02, "cache_dir": cache_dir},
        "model": {"hidden_size": 16, "num_layers": 1},
        "training": {"epochs": 2, "batch_size": 8, "sequences_per_epoch": 16},
        "search": {"n_trials": 3, "losses": ["ce", "aauc", "apauc", "aaucsum"]},
        "pruner": {"type": "none"},
        "resources": {"cpus": 1, "max_concurrent": 2},
        "storage": {"heartbeat_seconds": 1, "grace_seconds": 4},
    }
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def child_runs(client: MlflowClient, experiment_id: str) -> list:
    return client.search_runs([experiment_id], "tags.`musicdet.role` = 'trial'")


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
        assert {"roc.png", "scores.png", "config.yaml", "history.json", "model"} <= files

    number, path = export_best(spec, tmp_path / "best.yaml", register=True)
    assert number == study.best_trial.number
    retrained = train(load_run_config(path), tmp_path / "retrain", progress=False)
    assert retrained.best.val_auc == pytest.approx(study.best_value, abs=0.005)
    champion = client.get_model_version_by_alias("musicdet-detector", "champion")
    assert champion.run_id in {r.info.run_id for r in runs}

    capsys.readouterr()
    assert search_main(["best", str(tmp_path / "study.yaml")]) == 0
    table = capsys.readouterr().out
    assert f"{study.best_value:.4f}" in table.splitlines()[1]
    assert search_main(["status", str(tmp_path / "study.yaml")]) == 0
    assert "COMPLETE 3" in capsys.readouterr().out
    assert search_main(["run", str(tmp_path / "study.yaml")]) == 2  # exists: needs --resume


def test_failing_trial_is_failed_with_its_reason_and_the_study_goes_on(
        tmp_path, monkeypatch, cache_dir, local_ray) -> None:
    monkeypatch.chdir(tmp_path)
    grid = [{"type": "aaucsum", "gamma": 0.75, "lam": 1e39}, {"type": "ce"}]  # λ overflows: inf
    spec = load_spec(write_spec(tmp_path, cache_dir, name="failing",
                                search={"sampler": "grid", "grid": grid, "n_trials": 2}))
    result = run_study(spec)
    assert result.finished == 2
    failed, ok = load_study(spec).trials
    assert failed.state == TrialState.FAIL
    assert "NonFiniteLossError" in failed.user_attrs[FAIL_REASON]
    assert ok.state == TrialState.COMPLETE and ok.value > 0
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    statuses = {r.data.params["loss"]: (r.info.status, r.data.tags.get("fail_reason", ""))
                for r in child_runs(client, result.experiment_id)}
    assert statuses["aaucsum"][0] == "FAILED" and "epoch 1" in statuses["aaucsum"][1]
    assert statuses["ce"][0] == "FINISHED"


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_resume_after_killing_the_driver_ends_with_exactly_n_trials(
        tmp_path, monkeypatch, cache_dir, local_ray) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, cache_dir, name="killed", search={"n_trials": 4},
                      training={"epochs": 3})
    spec = load_spec(path)
    driver = subprocess.Popen([*DRIVER, "run", str(path), "--num-cpus", "2"], cwd=tmp_path,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    spec.workdir.mkdir(parents=True)
    storage = optuna.storages.RDBStorage(spec.storage_url)

    def states() -> list[TrialState]:
        try:
            study = optuna.load_study(study_name="killed", storage=storage)
        except KeyError:
            return []
        return [t.state for t in study.trials]

    _wait_for(lambda: TrialState.COMPLETE in states() and TrialState.RUNNING in states(), 240,
              "a completed and a running trial")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert TrialState.RUNNING in states()  # left behind by the dead driver

    result = run_study(spec, resume=True)
    trials = load_study(spec).trials
    assert result.finished == 4 and tally(trials).finished == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    completed_origins = [t.user_attrs.get("retry_of", t.number) for t in trials
                         if t.state == TrialState.COMPLETE]
    assert len(completed_origins) == len(set(completed_origins)) == 4
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = child_runs(client, result.experiment_id)
    assert sorted(int(r.data.tags["musicdet.trial_origin"]) for r in runs) == sorted(
        completed_origins)
    assert {r.info.status for r in runs} == {"FINISHED"}


# ---------------------------------------------------------------- PostgreSQL, MLflow server


@pytest.fixture
def databases():
    names = [f"musicdet_test_{os.getpid()}_{i}_{int(time.time())}" for i in range(2)]
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    yield [f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}" for name in names]
    with psycopg.connect(admin, autocommit=True) as connection:
        for name in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(base: str, endpoint: str, **query) -> dict:
    url = f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_two_drivers_on_postgresql_then_mlflow_server_rest(
        tmp_path, cache_dir, databases) -> None:
    optuna_url, mlflow_url = databases
    path = write_spec(tmp_path, cache_dir, name="shared", search={"n_trials": 5},
                      storage={"url": optuna_url},
                      mlflow={"tracking_uri": mlflow_url,
                              "artifact_location": str(tmp_path / "artifacts")})
    drivers = [subprocess.Popen([*DRIVER, "run", str(path), "--resume", "--num-cpus", "1"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    outputs = [d.communicate(timeout=400)[0] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs

    study = load_study(load_spec(path))
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert tally(study.trials).finished == 5
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5

    port = _free_port()
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
        _wait_for(up, 90, "the MLflow server")
        experiment = _get(base, "experiments/get-by-name",
                          experiment_name="musicdet-shared")["experiment"]
        body = json.dumps({"experiment_ids": [experiment["experiment_id"]],
                           "filter": "tags.`musicdet.role` = 'trial'"}).encode()
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                         headers={"Content-Type": "application/json"})
        runs = json.loads(urllib.request.urlopen(request, timeout=10).read())["runs"]
        assert len(runs) == 5
        origins = {next(t["value"] for t in r["data"]["tags"] if t["key"] ==
                        "musicdet.trial_origin") for r in runs}
        assert len(origins) == 5
        run_id = runs[0]["info"]["run_id"]
        history = _get(base, "metrics/get-history", run_id=run_id, metric_key="val_auc")
        assert [m["step"] for m in history["metrics"]] == [1, 2]
        params = {p["key"]: p["value"] for p in runs[0]["data"]["params"]}
        assert set(params) == {"loss", "alpha", "beta", "gamma", "lam", "delta"}
        files = {f["path"] for f in _get(base, "artifacts/list", run_id=run_id)["files"]}
        assert {"roc.png", "config.yaml", "model"} <= files
    finally:
        server.terminate()
        server.wait(timeout=30)
