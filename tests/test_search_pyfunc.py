"""The registered champion is an MLflow pyfunc model: a trial's logged model loads through
``models:/<name>@champion``, scores as `musicdet detect` does, and `mlflow models serve`
answers with those scores (real MLflow on SQLite in a tmp folder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from studyutil import free_port, wait_for, write_spec
from test_detect import save_tiny_model, tiny_detector, write_wav

from musicdet.audio import load_audio
from musicdet.cli import main
from musicdet.modelfile import save_model
from search.export import register_champion
from search.pyfunc import pip_requirements
from search.spec import load_spec
from search.tracking import StudyTracker, study_settings
from search.trainable import artifact_files, kept_model


@dataclass
class Champion:
    uri: str  # models:/<name>@champion
    tracking_uri: str
    audio: Path
    scores: np.ndarray  # musicdet detect's frame scores of audio
    tracker: StudyTracker
    run_id: str
    seconds: float  # how long finish_trial took, model logging included


def frozen_trial(number: int) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=number, state=TrialState.COMPLETE, value=0.7, datetime_start=datetime.now(),
        datetime_complete=datetime.now(), params={}, distributions={}, user_attrs={},
        system_attrs={}, intermediate_values={}, trial_id=number)


def detect_scores(model: Path, audio: Path, out: Path) -> np.ndarray:
    assert main(["detect", str(model), str(audio), "--out", str(out), "--frame-scores", "npy",
                 "--quiet"]) == 0
    return np.load(out / f"{audio.stem}.frames.npy")


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    """Trial 0 of a study, tracked as the driver does (finish_trial with its folder's files
    and model), then registered by export --register's function."""
    tmp = tmp_path_factory.mktemp("champion")
    spec = load_spec(write_spec(tmp, str(tmp / "cache"), name="serve"))
    settings = study_settings(spec)
    tracker = StudyTracker(settings, spec.name)
    parent = tracker.create_parent(spec.to_dict())
    run_id = tracker.trial_run(parent, 0, 0, "ray-0", {"loss": "ce"})
    folder = tmp / "trial_0"
    model = save_tiny_model(folder / "model.pt")
    (folder / "history.json").write_text("[]")
    started = time.perf_counter()
    tracker.finish_trial(run_id, "FINISHED", {"val_auc": 0.7}, artifact_files(folder),
                         model=kept_model(folder))
    seconds = time.perf_counter() - started
    assert register_champion(spec, frozen_trial(0)) == 1
    audio = write_wav(tmp / "audio" / "prog.wav", 70.0)  # two of detect's 60 s blocks
    return Champion(f"models:/{settings.registered_model}@champion", tracker.settings.tracking_uri,
                    audio, detect_scores(model, audio, tmp / "detected"), tracker, run_id,
                    seconds)


def test_the_champion_loads_and_scores_waveforms_and_paths_as_detect(
        champion: Champion, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion.tracking_uri)
    model = mlflow.pyfunc.load_model(champion.uri)
    waveform = load_audio(champion.audio)
    by_path = model.predict({"path": str(champion.audio)})
    by_audio = model.predict([{"audio": waveform}, {"audio": waveform[:16000]}])
    assert len(by_path) == 1 and len(by_audio) == 2
    for scores in (by_path["music_prob"][0], by_audio["music_prob"][0]):
        assert len(scores) == len(champion.scores) == 1 + len(waveform) // 160  # 100 frames/s
        np.testing.assert_allclose(scores, champion.scores, rtol=0, atol=1e-5)
    assert len(by_audio["music_prob"][1]) == 101
    with pytest.raises(Exception, match="row 0: expected exactly one of audio"):
        model.predict({"path": str(champion.audio), "audio": waveform[:10]})

    inputs = {spec.name for spec in model.metadata.get_input_schema().inputs}
    assert inputs == {"audio", "path"}
    assert model.metadata.get_output_schema().input_names() == ["music_prob"]
    local = Path(mlflow.artifacts.download_artifacts(champion.uri))
    assert (local / "input_example.json").is_file()
    requirements = (local / "requirements.txt").read_text().split()
    assert "torch==2.13.0" in requirements and "numpy~=2.4" in requirements
    assert set(pip_requirements()) <= set(requirements)
    assert (local / "code" / "musicdet" / "detect.py").is_file()
    assert not (local / "code" / "musicdet" / "models").exists()  # not the shipped model


def test_each_trial_run_logs_its_model_and_export_registers_that_one(
        champion: Champion) -> None:
    client = champion.tracker.client
    logged = champion.tracker.run_model(champion.run_id)
    assert logged is not None and logged.source_run_id == champion.run_id
    version = client.get_model_version_by_alias("musicdet-detector", "champion")
    assert (version.source, version.run_id) == (logged.artifact_location, champion.run_id)
    outputs = client.get_run(champion.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [logged.model_id]
    files = {a.path for a in client.list_artifacts(champion.run_id)}
    assert "history.json" in files and "model" not in files
    print(f"finish_trial with model logging: {champion.seconds:.2f} s")


def test_register_logs_an_older_runs_model_artifact_or_a_retrained_model_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(write_spec(tmp_path, str(tmp_path / "cache"), name="old"))
    tracker = StudyTracker(study_settings(spec), spec.name)
    run_id = tracker.trial_run(tracker.create_parent(spec.to_dict()), 0, 0, None, {"loss": "ce"})
    model = save_tiny_model(tmp_path / "model.pt")
    tracker.client.log_artifact(run_id, str(model), "model")  # how trials were logged before
    assert tracker.run_model(run_id) is None
    detector = tiny_detector(window=20)  # another model: a retrained one, say
    retrained = save_model(tmp_path / "retrained.pt", detector.model, detector.config,
                           detector.normalizer, detector.metrics)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.settings.tracking_uri)
    audio = write_wav(tmp_path / "a.wav", 2.0)
    champion = f"models:/{tracker.settings.registered_model}@champion"
    for version, registered in ((1, None), (2, retrained)):
        assert register_champion(spec, frozen_trial(0), registered) == version
        scores = mlflow.pyfunc.load_model(champion).predict({"path": str(audio)})["music_prob"]
        expected = detect_scores(registered or model, audio, tmp_path / f"out{version}")
        np.testing.assert_allclose(scores[0], expected, rtol=0, atol=1e-5)
    assert tracker.run_model(run_id) is not None  # the old artifact, now a logged model


@pytest.mark.slow  # ≈ 30 s: the server imports MLflow, torch and the model in a process
def test_mlflow_models_serve_answers_on_loopback(champion: Champion, tmp_path: Path) -> None:
    port = free_port()
    # the server runs `uvicorn` from PATH: this environment's, as in an activated venv
    path = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion.tracking_uri, "PATH": path}
    log = tmp_path / "serve.log"
    with open(log, "w") as handle:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", champion.uri,
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ping(base) or server.poll() is not None, 180, "mlflow models serve")
        assert server.poll() is None, log.read_text()[-3000:]
        body = {"dataframe_records": [{"audio": load_audio(champion.audio).tolist()}]}
        request = urllib.request.Request(f"{base}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{error}: {error.read().decode()[:2000]}") from None
        np.testing.assert_allclose(answer["predictions"][0]["music_prob"], champion.scores,
                                   rtol=0, atol=1e-5)
    finally:
        stop_group(server)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM ``process``'s process group (the server and its workers), SIGKILL after 30 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait(timeout=30)


def _ping(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
