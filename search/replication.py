"""The paper's experiments replicated with the platform (studies/replication.yaml).

A replication spec names the table studies (each run once per front end), the scale merged
into every study's base (corpus hours, schedule), the seeds per configuration, the joint study
(run until it has trained as many seed-epochs as one front end's tables), the learning curve
(CE and the best AUC-family configuration of the tables at more corpus sizes) and the test
sets every model is scored on (`search.testsets`). `replicate` runs all of it, each study
resumable; `search.report` writes docs/results.md from the records it leaves.

Derived studies are named ``<table>-<front end>``, ``<joint>-<front end>`` and
``learning-curve-<hours>h`` and live where their spec's root puts them (runs/<name>/).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import optuna
from optuna.trial import TrialState

from musicdet.config import DataConfig
from musicdet.configtools import ConfigError, from_dict, load_yaml, require
from musicdet.errors import UnfinishedError
from musicdet.losses import AUC_FAMILY

from .runner import run_study
from .space import LOSS, complete_params
from .spec import StudySpec, find_root, parse_spec, refuse_missing_sqlite
from .study import tally


@dataclass
class JointPart:
    """The joint search: ``study`` (relative to the replication spec) on ``front_end``, run
    ``chunk`` trials at a time until it has used the seed-epochs of that front end's tables."""

    study: str = "joint.yaml"
    front_end: str = "project"
    chunk: int = 4

    def __post_init__(self) -> None:
        require(self.chunk >= 1, "chunk", "chunk >= 1 (trials between budget checks)",
                self.chunk)


@dataclass
class LearningCurvePart:
    """CE and the tables' best AUC-family configuration (by mean validation AUC on
    ``front_end``) trained again on corpora of ``hours`` (besides the tables' own size)."""

    front_end: str = "project"
    hours: list[float] = field(default_factory=lambda: [0.25, 4.0])

    def __post_init__(self) -> None:
        require(len(self.hours) > 0 and all(0 < h < math.inf for h in self.hours), "hours",
                "a non-empty list of corpus sizes > 0 (hours)", self.hours)


@dataclass
class ReplicationSpec:
    """What `replicate` runs and `search.report` reports (see the module docstring)."""

    name: str
    tables: list[str]  # study specs, relative to this file
    scale: dict[str, Any] = field(default_factory=dict)  # merged into every study's base
    front_ends: dict[str, dict[str, Any]] = field(default_factory=lambda: {"paper": {}})
    repeats: int = 3
    joint: JointPart | None = None
    learning_curve: LearningCurvePart | None = None
    test: dict[str, DataConfig] = field(default_factory=dict)  # name → labelled set
    resources: dict[str, Any] = field(default_factory=dict)  # merged into every study's
    source: str = "replication.yaml"  # the spec file (set by `load_replication`)

    def __post_init__(self) -> None:
        require(len(self.tables) > 0, "tables", "at least one table study", self.tables)
        require(len(self.front_ends) > 0, "front_ends", "at least one front end",
                self.front_ends)
        require(self.repeats >= 2, "repeats", "repeats >= 2 (intervals need two seeds)",
                self.repeats)
        for key, part in (("joint", self.joint), ("learning_curve", self.learning_curve)):
            require(part is None or part.front_end in self.front_ends, f"{key}.front_end",
                    f"one of the front_ends ({', '.join(self.front_ends)})",
                    part and part.front_end)

    def study_file(self, name: str) -> Path:
        """Study spec ``name``, relative to the replication spec's folder."""
        return Path(self.source).parent / name


def load_replication(path: str | Path) -> ReplicationSpec:
    """Read and check a replication spec and every study it names."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "expected a mapping of replication settings")
    try:
        spec = from_dict(ReplicationSpec, {**data, "source": str(path)})
        for _ in table_studies(spec):
            pass
    except ConfigError as error:
        raise ConfigError(f"{path}: {error.key}" if error.key else str(path),
                          error.message) from None
    return spec


def merged(data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``extra`` merged in, nested mappings key by key."""
    out = copy.deepcopy(data)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def derived_study(spec: ReplicationSpec, file: str, front_end: str, name: str | None = None,
                  base: dict[str, Any] | None = None,
                  search: dict[str, Any] | None = None) -> StudySpec:
    """Study ``file`` at the replication's scale, seeds and resources on ``front_end``."""
    path = spec.study_file(file)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "expected a study spec mapping")
    data = merged(data, {
        "name": name or f"{data.get('name')}-{front_end}",
        "base": merged(merged(spec.scale, spec.front_ends[front_end]), base or {}),
        "search": {"repeats": spec.repeats, **(search or {})},
        "resources": spec.resources,
        "root": str(find_root(path, data.get("root"))),
    })
    return parse_spec(data, path)


def table_studies(spec: ReplicationSpec) -> Iterator[tuple[str, str, StudySpec]]:
    """(table file, front end, study) for every table on every front end."""
    for front_end in spec.front_ends:
        for file in spec.tables:
            yield file, front_end, derived_study(spec, file, front_end)


def joint_study(spec: ReplicationSpec, n_trials: int | None = None) -> StudySpec | None:
    if spec.joint is None:
        return None
    search = {} if n_trials is None else {"n_trials": n_trials}
    return derived_study(spec, spec.joint.study, spec.joint.front_end, search=search)


def existing_study(spec: StudySpec) -> optuna.Study | None:
    """``spec``'s Optuna study, or None if it has not been created (nothing is created)."""
    try:
        refuse_missing_sqlite(spec.storage_url, "no study")
        return optuna.load_study(study_name=spec.name, storage=spec.storage_url)
    except (UnfinishedError, KeyError):
        return None


def trained_seed_epochs(spec: StudySpec) -> int:
    """Seed-epochs the study of ``spec`` trained so far: epochs its trials reported × seeds
    (duplicates and trials that never reported train none)."""
    study = existing_study(spec)
    trials = study.get_trials(deepcopy=False) if study else []
    return sum(len(t.intermediate_values) for t in trials) * spec.search.repeats


def table_budget(spec: ReplicationSpec, front_end: str) -> int:
    """Seed-epochs the tables take on ``front_end``: configurations × seeds × epochs."""
    return sum(study.search.n_trials * spec.repeats * study.base.training.epochs
               for _, fe, study in table_studies(spec) if fe == front_end)


def best_auc_family(studies: list[StudySpec]) -> dict[str, Any]:
    """The loss (type and parameters) of the completed AUC-family trial of ``studies`` with
    the highest objective (mean validation AUC)."""
    best: tuple[float, dict[str, Any]] | None = None
    for study in studies:
        loaded = existing_study(study)
        trials = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if loaded else []
        for trial in trials:
            params = complete_params(study.search, trial.params)
            if params[LOSS] in AUC_FAMILY and (best is None or trial.value > best[0]):
                best = (trial.value, params)
    if best is None:
        raise ConfigError("learning_curve", "no completed AUC-family trial in the tables yet")
    return {"type": best[1].pop(LOSS), **best[1]}


def learning_curve_studies(spec: ReplicationSpec) -> list[tuple[float, StudySpec]]:
    """(hours, study) for each extra corpus size: CE and `best_auc_family` as a grid."""
    part = spec.learning_curve
    if part is None:
        return []
    tables = [s for _, fe, s in table_studies(spec) if fe == part.front_end]
    loss = best_auc_family(tables)
    first = spec.tables[0]
    out = []
    for hours in part.hours:
        name = f"learning-curve-{hours:g}h".replace(".", "_")
        base = {"data": {"synth_hours": hours}}
        search = {"sampler": "grid", "grid": [{"type": "ce"}, loss]}
        out.append((hours, derived_study(spec, first, part.front_end, name, base, search)))
    return out


def run_joint(spec: ReplicationSpec, run: Callable[[StudySpec], Any]) -> None:
    """Run the joint study ``chunk`` trials at a time until it has trained at least as many
    seed-epochs as its front end's tables."""
    assert spec.joint is not None
    budget = table_budget(spec, spec.joint.front_end)
    while True:
        study = joint_study(spec)
        assert study is not None
        used = trained_seed_epochs(study)
        if used >= budget:
            return
        done = _finished(study)
        run(joint_study(spec, done + spec.joint.chunk))


def _finished(spec: StudySpec) -> int:
    study = existing_study(spec)
    return tally(study.get_trials(deepcopy=False)).finished if study else 0


def replicate(spec: ReplicationSpec, *, num_cpus: int | None = None,
              out: TextIO | None = None,
              after_study: Callable[[StudySpec], None] | None = None) -> None:
    """Run every study of ``spec`` (resuming those begun): tables, joint, learning curve;
    ``after_study`` (the test-set scoring) follows each."""
    def run(study: StudySpec) -> None:
        result = run_study(study, resume=True, num_cpus=num_cpus, out=out)
        if result.finished < result.n_trials:  # interrupted, or trials failed past the limit
            raise UnfinishedError(f"study {study.name}: {result.finished} of {result.n_trials} "
                                  f"trials finished; run the replication again to continue")
        if after_study is not None:
            after_study(study)

    for _, _, study in table_studies(spec):
        run(study)
    if spec.joint is not None:
        run_joint(spec, run)
    for _, study in learning_curve_studies(spec):
        run(study)


def with_test(spec: ReplicationSpec, name: str, data: DataConfig) -> ReplicationSpec:
    """``spec`` with one more test set."""
    return replace(spec, test={**spec.test, name: data})
