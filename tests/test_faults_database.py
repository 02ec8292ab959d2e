"""PostgreSQL under stress: the study's database connections dropped mid-study, and three
drivers working on one study at once (Optuna and MLflow both on a real PostgreSQL)."""

from __future__ import annotations

import time

import optuna
import psycopg
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from studyutil import (
    POSTGRES_ADMIN,
    assert_study_complete,
    child_runs,
    postgres_databases,
    start_driver,
    study_trials,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.slow
EPOCHS = 2


def terminate_backends(databases: list[str]) -> int:
    """Drop every connection to ``databases`` (as an administrator would); how many."""
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (databases,)).fetchall()
    return len(rows)


def spec_on(tmp_path, cache_dir, name: str, n_trials: int, optuna_url: str, mlflow_url: str):
    return write_spec(tmp_path, cache_dir, name=name, search={"n_trials": n_trials},
                      training={"epochs": EPOCHS}, storage={"url": optuna_url},
                      mlflow={"tracking_uri": mlflow_url,
                              "artifact_location": str(tmp_path / "artifacts")})


def assert_complete(name: str, optuna_url: str, mlflow_url: str, n_trials: int) -> None:
    client = MlflowClient(mlflow_url)
    experiment = client.get_experiment_by_name(f"musicdet-{name}")
    trials = study_trials(optuna.storages.RDBStorage(optuna_url), name)
    assert_study_complete(trials, child_runs(client, experiment.experiment_id), n_trials, EPOCHS)


def test_dropped_connections_reconnect_or_stop_clearly_and_resume_completes(
        tmp_path, cache_dir) -> None:
    with postgres_databases(2) as urls:
        optuna_url, mlflow_url = urls
        path = spec_on(tmp_path, cache_dir, "dropped", 4, optuna_url, mlflow_url)
        storage = optuna.storages.RDBStorage(optuna_url)
        driver = start_driver(path, "--num-cpus", "2", cwd=tmp_path)
        names = [url.rsplit("/", 1)[1] for url in urls]
        wait_for(lambda: driver.poll() is not None or any(
            t.state == TrialState.RUNNING for t in study_trials(storage, "dropped")), 300,
            "a running trial")
        storage.remove_session()
        dropped = []
        while driver.poll() is None and len(dropped) < 100:
            dropped.append(terminate_backends(names))
            time.sleep(0.25)
        out, err = driver.communicate(timeout=400)
        if driver.returncode != 0:  # it stopped, saying why in one line, and resumes
            assert "Traceback" not in err, err
            assert err.strip().splitlines()[-1].startswith(
                "musicdet-search: error: lost the connection to the study's database ("), err
            assert driver.returncode == 4
            resumed = start_driver(path, "--resume", "--num-cpus", "2", cwd=tmp_path)
            out, err = resumed.communicate(timeout=400)
            assert resumed.returncode == 0, err
        assert sum(dropped) > 0
        assert_complete("dropped", optuna_url, mlflow_url, 4)


def test_three_drivers_on_one_study_record_every_trial_once(tmp_path, cache_dir) -> None:
    with postgres_databases(2) as (optuna_url, mlflow_url):
        path = spec_on(tmp_path, cache_dir, "three", 5, optuna_url, mlflow_url)
        drivers = [start_driver(path, "--resume", "--num-cpus", "1", cwd=tmp_path)
                   for _ in range(3)]
        outputs = [driver.communicate(timeout=400) for driver in drivers]
        assert [driver.returncode for driver in drivers] == [0, 0, 0], outputs
        assert all("5/5 trials finished" in out for out, _ in outputs)
        assert_complete("three", optuna_url, mlflow_url, 5)
        trials = study_trials(optuna.storages.RDBStorage(optuna_url), "three")
        nodes = {t.user_attrs["ray_node_id"] for t in trials if t.state == TrialState.COMPLETE
                 and "duplicate_of" not in t.user_attrs}  # a duplicate is not trained
        assert len(nodes) >= 2, "one driver ran every trial"  # each driver has its own Ray
