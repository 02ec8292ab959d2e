"""Security of the search platform: database passwords stay out of every record a study leaves,
the servers it starts listen on loopback only, and names from specs cannot leave the output
folder. (Safe model files and YAML loading: tests/test_guarantees_security.py.)"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from studyutil import DRIVER, DRIVER_ENV, free_port, postgres_databases, wait_for, write_spec

from musicdet.configtools import ConfigError
from search.cli import main as search_main
from search.spec import hide_password, load_spec, parse_spec
from search.study import open_storage
from search.trainable import TRIAL_ARTIFACTS, trial_dir

PASSWORD = "S3cretPw"
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::1\]|\[::ffff:127\.\d+\.\d+\.\d+\])$")


def with_password(url: str, password: str = PASSWORD) -> str:
    """``postgresql+psycopg://postgres@…`` with ``password`` (trust auth accepts any)."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


# ---------------------------------------------------------------- names and paths


@pytest.mark.parametrize("name", ["../../etc/x", "a/b", "/abs", "..", ".hidden", "a\\b", "x" * 65,
                                  "", "trial\n1", "ümlaut"])
def test_a_study_name_that_could_leave_the_output_folder_is_refused(tmp_path, name: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": name}))
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: name: ") and "\n" not in message
    assert "letters, digits" in message and "no '/'" in message


def test_folders_and_artifacts_derive_only_from_the_name_and_trial_numbers(tmp_path) -> None:
    spec = parse_spec({"name": "ok.name-1"})
    assert spec.workdir == Path.cwd() / "runs" / "ok.name-1"  # no spec file: the root is the cwd
    assert trial_dir(tmp_path, 7) == tmp_path / "trials" / "trial-0007"
    with pytest.raises(ValueError):  # a trial's folder takes a number, never a string
        trial_dir(tmp_path, "../x")  # type: ignore[arg-type]
    assert all("/" not in name for name in TRIAL_ARTIFACTS)


def test_a_spec_is_read_with_the_safe_yaml_loader(tmp_path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "study.yaml"
    path.write_text(f'name: !!python/object/apply:os.mkdir ["{marker}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: not valid YAML (line 1): could not determine "
                                        "a constructor for the tag")
    assert not marker.exists()


# ---------------------------------------------------------------- passwords in messages


@pytest.mark.parametrize("url", [
    f"postgresql://postgres:{PASSWORD}@db.example:5432/optuna",
    f"postgresql+psycopg://postgres:{PASSWORD}@db.example/optuna?sslmode=require",
    f"postgresql://postgres@db.example/optuna?password={PASSWORD}&sslmode=require",
    f"postgresql://postgres:a%2F{PASSWORD}%40b@db.example/optuna",
    f"http://user:{PASSWORD}@mlflow.example:5000",
])
def test_hide_password_masks_every_place_a_url_holds_one(url: str) -> None:
    shown = hide_password(url)
    assert PASSWORD not in shown and "***" in shown
    assert "db.example" in shown or "mlflow.example" in shown


def test_a_url_without_password_is_shown_as_given() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/optuna"
    assert hide_password(url) == url
    assert hide_password("sqlite:///runs/x/optuna.db") == "sqlite:///runs/x/optuna.db"


@pytest.mark.parametrize("storage", [
    f"postgresql://postgres:{PASSWORD}@127.0.0.1:9/optuna",  # nothing listens on port 9
    f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/musicdet_no_such_database",
])
def test_unreachable_storage_is_one_line_without_the_password(tmp_path, capsys, storage) -> None:
    spec = write_spec(tmp_path, str(tmp_path / "cache"))
    assert search_main(["status", str(spec), "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("musicdet-search: error: storage.url: cannot open")
    assert "***" in err and PASSWORD not in err


def test_a_missing_study_is_reported_without_the_password(tmp_path, capsys) -> None:
    with postgres_databases(1) as (url,):
        spec = write_spec(tmp_path, str(tmp_path / "cache"), storage={"url": with_password(url)})
        assert search_main(["export", str(spec), "--out", str(tmp_path / "best.yaml")]) == 3
    err = capsys.readouterr().err
    assert "no study 'tiny'" in err and PASSWORD not in err


def test_the_password_can_come_from_pgpassword_instead_of_the_url(tmp_path, monkeypatch) -> None:
    """libpq (under psycopg) reads PGPASSWORD when the URL has none: the spec needs no secret."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with postgres_databases(1) as (url,):
        spec = parse_spec({"name": "env", "storage": {"url": url}})
        storage = open_storage(spec.storage_url, spec)
        with storage.engine.connect() as connection:
            assert connection.connection.dbapi_connection.info.password == PASSWORD
        storage.engine.dispose()
        assert PASSWORD not in str(spec.to_dict())


# ---------------------------------------------------------------- one real study


def files_holding(folder: Path, secret: str) -> list[Path]:
    """Files under ``folder`` whose bytes contain ``secret`` (binary files too: pickles, DBs)."""
    needle = secret.encode()
    return [path for path in folder.rglob("*")
            if path.is_file() and not path.is_socket() and needle in path.read_bytes()]


def process_tree(root: int) -> set[int]:
    """``root`` and every process below it, or in a session it leads (Ray, `mlflow server`)."""
    parents, sessions = {}, {}
    for entry in os.listdir("/proc"):
        with suppress(OSError, IndexError):
            if entry.isdigit():
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry)], sessions[int(entry)] = int(stat[1]), int(stat[3])
    tree = {pid for pid, session in sessions.items() if session == root} | {root}
    while grown := {pid for pid, parent in parents.items() if parent in tree} - tree:
        tree |= grown | {pid for pid, session in sessions.items() if session in grown}
    return tree


@dataclass
class Observed:
    """What a process tree showed while it ran: listening sockets, command lines."""

    sockets: set[tuple[str, str]] = field(default_factory=set)  # (process name, local address)
    commands: set[str] = field(default_factory=set)

    def look(self, root: int) -> None:
        pids = process_tree(root)
        lines = subprocess.run(["ss", "-H", "-l", "-t", "-u", "-n", "-p"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
        for line in lines:
            owners = re.findall(r'\("([^"]+)",pid=(\d+)', line)
            if any(int(pid) in pids for _, pid in owners):
                self.sockets.add((owners[0][0], line.split()[4].rsplit(":", 1)[0]))
        for pid in pids:
            with suppress(OSError):
                self.commands.add(Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                    errors="replace").replace("\0", " "))

    def exposed(self) -> set[tuple[str, str]]:
        """Sockets listening on more than loopback."""
        return {(name, address) for name, address in self.sockets if not LOOPBACK.match(address)}


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short RAY_TMPDIR (Ray's unix socket paths must stay under 108 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="msec", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_driver(spec: Path, cwd: Path, logs: Path, ray_tmp: Path) -> Observed:
    """``musicdet-search run SPEC`` to its end, output in ``logs``; what its processes showed."""
    observed = Observed()
    with (logs / "driver.txt").open("w") as out:
        driver = subprocess.Popen([*DRIVER, "run", str(spec), "--num-cpus", "2"], cwd=cwd,
                                  env={**DRIVER_ENV, "RAY_TMPDIR": str(ray_tmp)},
                                  start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        try:
            while driver.poll() is None:
                observed.look(driver.pid)
                time.sleep(0.5)
        finally:
            driver.wait(timeout=300)
            with suppress(ProcessLookupError):  # anything of its Ray instance left behind
                os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, (logs / "driver.txt").read_text()[-3000:]
    return observed


def serve_ui(spec: Path, cwd: Path, logs: Path) -> Observed:
    """``musicdet-search ui SPEC`` until it serves, then stopped; what its processes showed."""
    observed, log = Observed(), logs / "ui.txt"
    with log.open("w") as out:
        ui = subprocess.Popen([*DRIVER, "ui", str(spec), "--port", str(free_port())], cwd=cwd,
                              env=DRIVER_ENV, start_new_session=True, stdout=out,
                              stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "MLflow UI for study" in log.read_text() or ui.poll() is not None,
                     120, "the MLflow UI")
            assert ui.poll() is None, log.read_text()
            observed.look(ui.pid)
        finally:
            tree = process_tree(ui.pid)
            ui.terminate()  # it stops its server
            ui.wait(timeout=60)
            for pid in tree - {ui.pid}:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    return observed


def mlflow_records(url: str, experiment_name: str, into: Path) -> str:
    """Experiment tags, run names, params and tags as text; every artifact downloaded ``into``."""
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3  # the study's run and its two trials
    for run in runs:
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, tracking_uri=url,
                                            dst_path=str(into / run.info.run_id))
    return repr([experiment.tags, [(r.info, r.data.params, r.data.tags) for r in runs]])


def optuna_records(url: str, name: str) -> str:
    """The study's user and system attributes, and its trials' params and attributes, as text."""
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name(name)
    trials = storage.get_all_trials(study_id)
    assert len(trials) == 2
    records = repr([storage.get_study_user_attrs(study_id), storage.get_study_system_attrs(
        study_id), [(t.params, t.user_attrs, t.system_attrs) for t in trials]])
    storage.engine.dispose()
    return records


@pytest.mark.slow
def test_a_study_keeps_passwords_out_of_its_records_and_listens_on_loopback(
        tmp_path, cache_dir, ray_tmp, capsys) -> None:
    work, logs, downloads = tmp_path / "work", tmp_path / "logs", tmp_path / "downloads"
    for folder in (work, logs, downloads):
        folder.mkdir()
    with postgres_databases(2) as urls:
        optuna_url, mlflow_url = map(with_password, urls)
        spec = write_spec(tmp_path, cache_dir, name="secret", search={"n_trials": 2},
                          training={"epochs": 1}, storage={"url": optuna_url},
                          mlflow={"tracking_uri": mlflow_url,
                                  "artifact_location": str(work / "artifacts")})
        study = run_driver(spec, work, logs, ray_tmp)
        ui = serve_ui(spec, work, logs)
        capsys.readouterr()
        for command in (["status", str(spec)], ["best", str(spec)],
                        ["export", str(spec), "--out", str(work / "best.yaml"), "--register"]):
            assert search_main(command) == 0
        printed = capsys.readouterr()
        records = mlflow_records(mlflow_url, "musicdet-secret", downloads)
        records += optuna_records(optuna_url, "secret")

    assert files_holding(tmp_path, PASSWORD) == [spec]  # the user's spec file, nothing else
    assert len(list(ray_tmp.rglob("*.log"))) > 5  # Ray's own logs and session files ...
    assert files_holding(ray_tmp, PASSWORD) == []  # ... hold no password either
    assert PASSWORD not in printed.out + printed.err + records
    assert PASSWORD not in " ".join(study.commands | ui.commands)  # `ps` shows them to all
    assert "storage postgresql+psycopg://postgres:***@127.0.0.1" in (
        logs / "driver.txt").read_text()
    assert len(list(downloads.rglob("history.json"))) == 2  # the artifacts were all fetched

    assert {"gcs_server", "raylet"} <= {name for name, _ in study.sockets}, study.sockets
    assert study.exposed() == set()
    assert ui.sockets and ui.exposed() == set()


def test_the_scan_finds_a_password_in_binary_files(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "blob.bin").write_bytes(b"\x00\x80" + PASSWORD.encode() + b"\xff")
    (tmp_path / "clean.txt").write_text("nothing here")
    assert files_holding(tmp_path, PASSWORD) == [tmp_path / "a" / "blob.bin"]


def test_loopback_pattern() -> None:
    assert all(LOOPBACK.match(a) for a in ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"))
    assert not any(LOOPBACK.match(a) for a in ("*", "0.0.0.0", "[::]", "192.0.2.2"))

