"""The study driver SIGKILLed again and again (with its Ray instance), each time followed by
``musicdet-search run SPEC --resume``: Optuna and MLflow on a real PostgreSQL."""

from __future__ import annotations

import random
import time

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState
from studyutil import (
    assert_study_complete,
    child_runs,
    kill_driver,
    postgres_databases,
    start_driver,
    study_trials,
    wait_for,
    write_spec,
)

from search.study import tally

pytestmark = pytest.mark.slow
N_TRIALS, EPOCHS = 4, 2


def running(trials: list[FrozenTrial], finished_before: int) -> bool:
    return any(t.state == TrialState.RUNNING for t in trials)


def one_more_finished(trials: list[FrozenTrial], finished_before: int) -> bool:
    return tally(trials).finished > finished_before


# Where each driver session is killed: a condition on the study, then a random delay (s).
KILL_POINTS = [
    (lambda trials, finished_before: True, (3.0, 12.0)),  # start-up: imports, study, Ray
    (running, (0.0, 4.0)),  # during a trial
    (one_more_finished, (0.0, 0.3)),  # as a trial ends: Optuna told, MLflow run still open
]


def test_repeated_driver_kills_then_resume_end_with_exactly_n_trials(tmp_path, cache_dir) -> None:
    rng = random.Random(7)
    with postgres_databases(2) as (optuna_url, mlflow_url):
        path = write_spec(tmp_path, cache_dir, name="killed", search={"n_trials": N_TRIALS},
                          training={"epochs": EPOCHS}, storage={"url": optuna_url},
                          mlflow={"tracking_uri": mlflow_url,
                                  "artifact_location": str(tmp_path / "artifacts")})
        storage = optuna.storages.RDBStorage(optuna_url)  # creates the schema before the drivers
        for condition, (low, high) in KILL_POINTS:
            before = tally(study_trials(storage, "killed")).finished
            driver = start_driver(path, "--resume", "--num-cpus", "2", cwd=tmp_path)
            wait_for(lambda c=condition, b=before, d=driver: d.poll() is not None
                     or c(study_trials(storage, "killed"), b), 300, "the kill point")
            time.sleep(rng.uniform(low, high))
            assert driver.poll() is None, driver.communicate()
            kill_driver(driver)
        assert tally(study_trials(storage, "killed")).finished < N_TRIALS

        driver = start_driver(path, "--resume", "--num-cpus", "2", cwd=tmp_path)
        out, err = driver.communicate(timeout=400)
        assert driver.returncode == 0, err
        assert f"{N_TRIALS}/{N_TRIALS} trials finished" in out

        client = MlflowClient(mlflow_url)
        experiment = client.get_experiment_by_name("musicdet-killed")
        runs = child_runs(client, experiment.experiment_id)
        assert_study_complete(study_trials(storage, "killed"), runs, N_TRIALS, EPOCHS)
        parent = client.search_runs([experiment.experiment_id], "tags.`musicdet.role` = 'study'")
        assert [p.info.status for p in parent] == ["FINISHED"]
