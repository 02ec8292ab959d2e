"""The detector as an MLflow pyfunc model: what the registry serves (`mlflow models serve`).

`DetectorModel` wraps one self-contained model file (the artifact ``model``) and scores
audio the way `musicdet detect` does, on the same 60 s blocks, so its frame probabilities
equal detect's frame scores. Input: a DataFrame, a list of dicts (a row each) or a dict
(one row) with, per row, either ``audio`` — a waveform: 16 kHz mono float32 samples, a list
or 1-D array — or ``path`` — an audio file the model's host can read (any format and rate
detect reads).
Output: a DataFrame with one row per input row, ``music_prob``: the music probability of
every frame, frame *t* centred at *t* · hop (10 ms, 100 frames/s, for the paper's features;
`FeatureConfig.hop_seconds` of the model). Served, a request is
``{"dataframe_records": [{"audio": [0.0, 0.01, ...]}]}`` and the answer
``{"predictions": [{"music_prob": [...]}]}``.

`log_detector` logs a model file as an MLflow 3 LoggedModel (linked to a run) with a
signature, an input example and pip requirements pinned as pyproject.toml pins them. The
model is logged *from code* (no pickle): this file is the model's code and the musicdet
package (without its shipped model) travels in its code folder, so loading it needs no
checkout. This module therefore imports only musicdet, MLflow and pandas, and ends by
declaring its model (`mlflow.models.set_model`), as a models-from-code file must.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModel, LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

import musicdet
from musicdet.audio import SAMPLE_RATE
from musicdet.detect import detect_file, stream_probabilities
from musicdet.modelfile import Detector, load_model

BLOCK_SECONDS = 60.0  # detect's default audio block: the same blocks give the same scores
# Logging a trial's model validates its input example: keep MLflow's line about it and the
# artifact download bar out of a study's progress output.
logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
MODEL_ARTIFACT = "model"  # the model file's name among the pyfunc model's artifacts
# The distributions the scoring path imports (musicdet.detect and musicdet.modelfile), pinned
# as pyproject.toml pins them; mlflow and pandas load and serve the model.
SCORING_DISTRIBUTIONS = ("torch", "numpy", "scipy", "librosa", "opensmile", "soundfile", "soxr",
                         "audioread", "pyyaml", "tqdm", "mlflow")
# audio is typed double: JSON numbers arrive as float64, which MLflow will not narrow to float32
# (the samples are made float32 again before scoring, exactly for float32 input).
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(Array(DataType.double), "audio", required=False),
                   ColSpec(DataType.string, "path", required=False)]),
    outputs=Schema([ColSpec(Array(DataType.double), "music_prob")]),
)


class DetectorModel(mlflow.pyfunc.PythonModel):
    """Frame music probabilities of waveforms or audio files (see the module's docstring)."""

    detector: Detector

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.detector = load_model(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per input row: ``music_prob``, the frame probabilities (float64)."""
        return pd.DataFrame({"music_prob": [self.score(item) for item in rows(model_input)]})

    def score(self, item: str | np.ndarray) -> np.ndarray:
        """Frame probabilities of a file path or of a 16 kHz mono waveform."""
        if isinstance(item, str):
            return detect_file(self.detector, item, block_seconds=BLOCK_SECONDS).probabilities
        return np.concatenate(list(stream_probabilities(self.detector, blocks(item))))


def rows(model_input: pd.DataFrame) -> list[str | np.ndarray]:
    """Each row's path (str) or waveform (float32 array). MLflow hands predict a DataFrame:
    a dict becomes one row, a list of dicts one row each."""
    if not isinstance(model_input, pd.DataFrame):
        raise TypeError(f"model input: expected a DataFrame with column audio or path, got "
                        f"{type(model_input).__name__}")
    return [_row(row, index) for index, row in enumerate(model_input.to_dict("records"))]


def _row(row: dict[str, Any], index: int) -> str | np.ndarray:
    audio, path = row.get("audio"), row.get("path")
    has_audio = audio is not None and not (np.isscalar(audio) and pd.isna(audio))
    has_path = isinstance(path, str) and bool(path)
    if has_audio == has_path:
        given = sorted(key for key, value in row.items() if value is not None)
        raise ValueError(f"model input row {index}: expected exactly one of audio (16 kHz mono "
                         f"samples) or path, got {given}")
    if has_path:
        return path  # type: ignore[return-value]
    waveform = np.asarray(audio, dtype=np.float32)
    if waveform.ndim != 1 or not len(waveform):
        raise ValueError(f"model input row {index}: audio must be a non-empty 1-D list of "
                         f"16 kHz mono samples, got shape {waveform.shape}")
    return waveform


def blocks(waveform: np.ndarray, seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Consecutive ``seconds``-long blocks of a 16 kHz waveform, as `stream_audio` gives."""
    size = round(seconds * SAMPLE_RATE)
    for start in range(0, len(waveform), size):
        yield waveform[start : start + size]


# --------------------------------------------------------------------------- logging


def pip_requirements(pyproject: Path | None = None) -> list[str]:
    """The scoring distributions' requirements as pyproject.toml pins them (``torch==2.13.0``,
    ``numpy~=2.4``, ...); without a pyproject.toml (an installed package), pinned to the
    installed versions."""
    import tomllib

    pyproject = pyproject or Path(musicdet.__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        listed = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
        pins = {_name(item): item for item in listed}
        return [pins[name] for name in SCORING_DISTRIBUTIONS]
    return [f"{name}=={importlib.metadata.version(name)}" for name in SCORING_DISTRIBUTIONS]


def _name(requirement: str) -> str:
    for index, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:index].lower()
    return requirement.lower()


def input_example() -> pd.DataFrame:
    """Half a second of a 440 Hz tone as the waveform of one row."""
    time = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    return pd.DataFrame({"audio": [(0.1 * np.sin(2 * np.pi * 440 * time)).astype(np.float32)]})


def log_detector(client: MlflowClient, experiment_id: str, model_file: Path,
                 run_id: str | None = None, name: str = "detector",
                 tags: dict[str, str] | None = None) -> LoggedModel:
    """Log ``model_file`` as a pyfunc LoggedModel of ``experiment_id`` (an output of run
    ``run_id``); ``models:/<model_id>`` loads it."""
    model = client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                       tags=tags, model_type="musicdet-detector")
    if run_id is not None:
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    with tempfile.TemporaryDirectory(prefix="musicdet-pyfunc-") as tmp:
        local = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            local, python_model=Path(__file__), artifacts={MODEL_ARTIFACT: str(model_file)},
            code_paths=[_scoring_code(Path(tmp) / "code")], signature=SIGNATURE,
            input_example=input_example(), pip_requirements=pip_requirements(),
            mlflow_model=Model(artifact_path=model.artifact_location, model_uuid=model.model_id,
                               run_id=run_id, model_id=model.model_id),
        )
        client.log_model_artifacts(model.model_id, str(local))
    return client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)


def _scoring_code(folder: Path) -> str:
    """A copy of the musicdet package without its shipped models, for the model's code."""
    package = Path(musicdet.__file__).resolve().parent
    shutil.copytree(package, folder / "musicdet",
                    ignore=shutil.ignore_patterns("__pycache__", "models", "*.pyc"))
    return str(folder / "musicdet")


# The models-from-code declaration: loading the logged model runs this file and takes this.
mlflow.models.set_model(DetectorModel())
