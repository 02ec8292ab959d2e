"""Held-out test sets: every model a study trained (each seed of each completed trial) scored
on labelled sets it never saw, after the study, without touching its selection.

For test set NAME, the trial's MLflow run gets ``test_NAME_<metric>`` (the mean over the
seeds), ``test_NAME_<metric>_sd`` and ``test_NAME_<metric>_seedS`` for auc, eer, recall and f1
(recall and F1 at precision `TARGET_PRECISION`; 0 where no threshold reaches it), and each
seed's frame scores as artifact ``test-scores/NAME-seedS.npz`` (labels, scores, mask,
file_index: each frame's file, names: the files), from which `search.report` draws ROC curves and
intervals. A trial already scored on NAME is skipped, so scoring resumes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev
from typing import TextIO

import numpy as np
from mlflow.entities import Metric
from optuna.trial import TrialState

from musicdet.config import DataConfig
from musicdet.configtools import ConfigError, from_dict
from musicdet.examples import load_examples
from musicdet.features import FeatureConfig
from musicdet.metrics import evaluate
from musicdet.modelfile import load_model
from musicdet.sequences import Example

from .export import load_study
from .spec import StudySpec
from .study import trial_origin
from .tracking import StudyTracker, study_settings
from .trainable import MODEL, seed_folders, seed_number, trial_dir

TEST_METRICS = ("auc", "eer", "recall", "f1")
TARGET_PRECISION = 0.90
SCORES_FOLDER = "test-scores"


@dataclass
class TestSet:
    """A labelled set's examples (raw features through the study's feature cache)."""

    name: str
    examples: list[Example]

    @classmethod
    def load(cls, name: str, data: DataConfig, features: FeatureConfig,
             cache_dir: str | Path) -> TestSet:
        """Every file of ``data``; one line naming the set if it lacks a class or a path."""
        check_test_sets({name: data})
        examples = load_examples(data, features, progress=False, cache_dir=cache_dir)
        labels = np.concatenate([e.labels[e.mask] for e in examples]) if examples else []
        if len(np.unique(labels)) < 2:
            raise ConfigError(f"test.{name}", "needs labelled frames of both classes")
        return cls(name, examples)


def check_test_sets(tests: Mapping[str, DataConfig]) -> None:
    """One line naming the first test set whose dataset path does not exist."""
    for name, data in tests.items():
        if data.format != "synth" and not Path(data.path or "").exists():
            raise ConfigError(f"test.{name}.path", f"{data.path} does not exist; expected a "
                                                   f"{data.format} dataset")


def parse_test_option(text: str) -> tuple[str, DataConfig]:
    """``NAME=FORMAT:PATH`` (a --test option) → (NAME, its data config)."""
    name, sep, rest = text.partition("=")
    format, colon, path = rest.partition(":")
    if not (sep and colon and name.isidentifier() and path):
        raise ConfigError("--test", f"expected NAME=FORMAT:PATH (e.g. real=generic:data/real), "
                                    f"got {text!r}")
    try:
        return name, from_dict(DataConfig, {"format": format, "path": path})
    except ConfigError as error:
        raise error.within(f"--test {name}") from None


def seed_scores(model: Path, test: TestSet) -> dict[str, np.ndarray]:
    """Frame labels, music probabilities, mask and file index of ``model`` on ``test``."""
    detector = load_model(model)
    parts = [(e.labels, detector.probabilities(e.features), e.mask) for e in test.examples]
    return {
        "labels": np.concatenate([p[0] for p in parts]).astype(np.float32),
        "scores": np.concatenate([p[1] for p in parts]).astype(np.float32),
        "mask": np.concatenate([p[2] for p in parts]),
        "file_index": np.concatenate([np.full(len(p[0]), i, np.int32)
                                      for i, p in enumerate(parts)]),
        "names": np.array([e.name for e in test.examples]),
    }


def scored_metrics(scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """`TEST_METRICS` of one seed's scores."""
    result = evaluate(scores["labels"], scores["scores"], scores["mask"], TARGET_PRECISION)
    return {key: float(result[key] or 0.0) for key in TEST_METRICS}


def seed_summary(name: str, per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """The MLflow metrics of test set ``name`` from each seed's `scored_metrics`."""
    out: dict[str, float] = {}
    for key in TEST_METRICS:
        values = [m[key] for m in per_seed.values()]
        out[f"test_{name}_{key}"] = fmean(values)
        if len(values) > 1:
            out[f"test_{name}_{key}_sd"] = stdev(values)
        out |= {f"test_{name}_{key}_seed{s}": m[key] for s, m in per_seed.items()}
    return out


def score_study(spec: StudySpec, tests: Mapping[str, DataConfig], out: TextIO | None = None
                ) -> int:
    """Score every completed trial of ``spec`` on ``tests`` (name → labelled set) not scored
    yet; returns the number of trials scored."""
    study = load_study(spec)
    tracker = StudyTracker(study_settings(spec), spec.name, create=False)
    runs = tracker.trial_runs_by_origin()
    cache = spec.base_config().data.cache_dir
    loaded: dict[str, TestSet] = {}
    scored = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        run = runs.get(trial_origin(trial))
        folders = [f for f in seed_folders(trial_dir(spec.workdir, trial_origin(trial)))
                   if (f / MODEL).is_file()]
        if run is None or not folders:
            continue
        for name, data in tests.items():
            if f"test_{name}_auc" in run.data.metrics:
                continue
            if name not in loaded:
                loaded[name] = TestSet.load(name, data, spec.base.features, cache)
            _score_trial(tracker, run.info.run_id, folders, loaded[name], spec.base.seed)
            scored += 1
            if out is not None:
                print(f"study {spec.name}: trial {trial.number} scored on {name}", file=out,
                      flush=True)
    return scored


def _score_trial(tracker: StudyTracker, run_id: str, folders: list[Path], test: TestSet,
                 base_seed: int) -> None:
    per_seed = {}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            seed = seed_number(folder) if folder.name.startswith("seed-") else base_seed
            scores = seed_scores(folder / MODEL, test)
            per_seed[seed] = scored_metrics(scores)
            path = Path(tmp) / f"{test.name}-seed{seed}.npz"
            np.savez_compressed(path, **scores)
            tracker.client.log_artifact(run_id, str(path), SCORES_FOLDER)
    now = int(time.time() * 1000)
    tracker.client.log_batch(run_id, metrics=[
        Metric(k, v, now, 0) for k, v in seed_summary(test.name, per_seed).items()])
