"""Helpers shared by the study tests (test_search_*.py, test_faults_*.py): tiny specs,
driver processes, PostgreSQL databases, and the invariants every study must end with."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import optuna
import psycopg
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import FrozenTrial, TrialState

from musicdet.config import RunConfig
from search.runner import run_status
from search.study import tally, trial_origin

BENCH = Path(__file__).resolve().parent.parent / "bench"
DRIVER = [sys.executable, "-c", "from search.cli import main; raise SystemExit(main())"]
# One torch/BLAS thread in driver processes too, as tests/conftest.py sets in this one.
DRIVER_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
RUN_KEYS = {f.name for f in fields(RunConfig)}  # write_spec puts these under base:


def bench(name: str) -> ModuleType:
    """The script bench/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_spec(folder: Path, cache_dir: str, **sections: object) -> Path:
    """``folder/study.yaml``: a tiny study (seconds per trial); ``sections`` update its keys
    (those of the run config, e.g. ``training``, update ``base``'s)."""
    base: dict[str, object] = {
        "seed": 0,
        "data": {"synth_hours": 0.02, "cache_dir": cache_dir},
        "model": {"hidden_size": 16, "num_layers": 1},
        "training": {"epochs": 2, "batch_size": 8, "sequences_per_epoch": 16},
    }
    spec: dict[str, object] = {
        "name": "tiny",
        "base": base,
        "search": {"n_trials": 3, "losses": ["ce", "aauc", "apauc", "aaucsum"]},
        "pruner": {"type": "none"},
        "resources": {"cpus": 1, "max_concurrent": 2},
        "storage": {"heartbeat_seconds": 1, "grace_seconds": 4},
    }
    for key, value in sections.items():
        section = base if key in RUN_KEYS else spec
        old = section.get(key, {})
        section[key] = {**old, **value} if isinstance(value, dict) and isinstance(old, dict) \
            else value
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_driver(spec: Path, *args: str, cwd: Path,
                 env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``musicdet-search run SPEC ARGS`` as a process in a session of its own (see kill_driver)."""
    return subprocess.Popen([*DRIVER, "run", str(spec), *args], cwd=cwd, env=env or DRIVER_ENV,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_driver(driver: subprocess.Popen[str]) -> None:
    """SIGKILL the driver and whatever it started (its local Ray instance and workers)."""
    os.killpg(driver.pid, signal.SIGKILL)
    driver.communicate(timeout=60)


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rest(base: str, endpoint: str, body: dict | None = None) -> dict:
    """GET (or POST ``body`` to) MLflow's REST API at ``base``/api/2.0/mlflow/``endpoint``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{endpoint}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@contextmanager
def postgres_databases(count: int) -> Iterator[list[str]]:
    """``count`` fresh databases on the local PostgreSQL (sqlalchemy URLs), dropped after."""
    names = [f"musicdet_test_{os.getpid()}_{time.time_ns()}_{i}" for i in range(count)]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield [f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}" for name in names]
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
            for name in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def study_trials(storage: optuna.storages.BaseStorage, name: str) -> list[FrozenTrial]:
    """The trials of study ``name`` ([] while it does not exist)."""
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    except KeyError:
        return []


def child_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    return client.search_runs([experiment_id], "tags.`musicdet.role` = 'trial'")


def assert_study_complete(trials: list[FrozenTrial], runs: list[Run], n_trials: int,
                          epochs: int) -> None:
    """Exactly ``n_trials`` finished, unique numbers and configurations, none left running,
    and one ended MLflow child run per finished trial with the trial's status."""
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), numbers
    assert tally(trials).finished == n_trials, [(t.number, t.state) for t in trials]
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finished = {trial_origin(t): t for t in trials
                if run_status(t, epochs) is not None}
    assert len(finished) == n_trials, "a configuration finished twice"
    by_origin = {int(r.data.tags["musicdet.trial_origin"]): r for r in runs}
    assert len(by_origin) == len(runs), "two MLflow runs for one trial"
    assert sorted(by_origin) == sorted(finished), (sorted(by_origin), [
        (t.number, t.state.name, t.user_attrs) for t in trials])
    for origin, run in by_origin.items():
        status = run_status(finished[origin], epochs)
        assert run.data.tags["status"] == status, (origin, run.data.tags)
        assert run.info.status == ("FAILED" if status == "FAILED" else "FINISHED"), origin
