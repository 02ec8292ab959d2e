"""Selection and export: the top trials of a study (the Pareto front of a multi-objective
one), and the best (or a chosen) one as a run config.

The exported YAML is what `musicdet train --config` reads: the study's base config with the
trial's loss. Trained again with it, the model reproduces the trial's validation AUC (same
data, seed and epochs). Only COMPLETE trials are ranked and exported: a PRUNED one (stopped
early by the pruner) ran fewer epochs than its config would, so its value would not be
reproduced, and the pruner judged it not worth finishing; ``--trial N`` of one is refused,
naming its epochs. A duplicate (``duplicate_of``) is listed and exported as the trial it copies.
A multi-objective study has no single best trial: ``export`` needs ``--trial N``, typically a
point of its Pareto front (any COMPLETE trial is accepted).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from mlflow.entities import LoggedModel
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from musicdet.config import RunConfig
from musicdet.configtools import ConfigError
from musicdet.errors import CommandError, ExitStatus, UnfinishedError
from musicdet.modelfile import load_model

from .space import complete_params, describe, run_config_of
from .spec import RUN_IT_FIRST, StudySpec, hide_password
from .study import DUPLICATE_OF, open_storage, pareto_front, trial_origin
from .tracking import ORIGIN, ROLE, StudyTracker, study_settings
from .trainable import MODEL

PARETO_TABLE = "pareto_front.txt"  # the table's file on the parent run and under summary/


@dataclass
class TrialRow:
    """One line of `best`'s table: a trial's objective values in the spec's order."""

    number: int
    values: list[float]
    loss: str
    epochs: int
    seconds: float

    @property
    def value(self) -> float:
        """The first objective's value (a single-objective study's only one)."""
        return self.values[0]


def load_study(spec: StudySpec) -> optuna.Study:
    """The spec's Optuna study (it must exist)."""
    storage = open_storage(spec.existing_storage_url(), spec)
    try:
        return optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        raise UnfinishedError(f"no study {spec.name!r} in {hide_password(spec.storage_url)}; "
                              f"{RUN_IT_FIRST}") from None


def top_trials(spec: StudySpec, study: optuna.Study, count: int = 10) -> list[TrialRow]:
    """The ``count`` best COMPLETE trials, best first (duplicates left out: they repeat the
    trial they copy)."""
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == TrialState.COMPLETE and DUPLICATE_OF not in t.user_attrs]
    return _rows(spec, complete)[:count]


def pareto_rows(spec: StudySpec, study: optuna.Study) -> list[TrialRow]:
    """The Pareto front (`pareto_front`), best first by the first objective."""
    return _rows(spec, pareto_front(study))


def pareto_table(spec: StudySpec, study: optuna.Study) -> str:
    """`format_table` of the Pareto front, under a line naming the objectives' directions."""
    objectives = spec.search.objectives
    sense = ", ".join(f"{o.metric} {o.direction}d" for o in objectives)
    rows = pareto_rows(spec, study)
    return (f"Pareto front of study {spec.name!r} ({sense}): {len(rows)} COMPLETE trials "
            "not dominated by any other\n"
            + format_table(rows, [o.metric for o in objectives]))


def _rows(spec: StudySpec, trials: list[optuna.trial.FrozenTrial]) -> list[TrialRow]:
    """``trials`` as table rows, best first by the first objective (then by number)."""
    sign = -1.0 if spec.search.primary.direction == "maximize" else 1.0
    ranked = sorted(trials, key=lambda t: (sign * t.values[0], t.number))
    return [TrialRow(t.number, [float(v) for v in t.values], describe(_params(spec, t)),
                     int(t.user_attrs.get("epochs", spec.base.training.epochs)),
                     t.duration.total_seconds() if t.duration else float("nan"))
            for t in ranked]


def format_table(rows: list[TrialRow], metrics: Sequence[str]) -> str:
    """Plain-text table of ``rows``: one column per objective ``metrics``."""
    widths = [max(8, len(m)) for m in metrics]
    head = "".join(f"  {m:>{w}}" for m, w in zip(metrics, widths, strict=True))
    lines = [f"{'trial':>5}{head}  {'epochs':>6}  {'seconds':>8}  loss"]
    lines += [f"{r.number:>5}" + "".join(f"  {_number(v):>{w}}" for v, w in zip(
        r.values, widths, strict=True)) + f"  {r.epochs:>6}  {r.seconds:>8.1f}  {r.loss}"
        for r in rows]
    return "\n".join(lines)


def _number(value: float) -> str:
    """An objective value for a table: 4 significant digits in fixed point (0.8123, 0.008404,
    49.40, 12345), so a partial AUC (at most 0.1) keeps its resolution."""
    if not math.isfinite(value) or value == 0:
        return f"{value:.4f}"
    return f"{value:.{max(0, 3 - math.floor(math.log10(abs(value))))}f}"


def chosen_trial(spec: StudySpec, study: optuna.Study,
                 number: int | None = None) -> optuna.trial.FrozenTrial:
    """Trial ``number`` of ``study``, which must be COMPLETE (a duplicate: the trial it
    copies); the best trial if None (a multi-objective study has none: refused, naming its
    Pareto front)."""
    trials = study.get_trials(deepcopy=False)
    if number is None:
        if not any(t.state == TrialState.COMPLETE for t in trials):
            raise UnfinishedError(f"study {spec.name!r} has no completed trial yet")
        if spec.search.multi_objective:
            front = ", ".join(str(t.number) for t in pareto_front(study))
            raise CommandError(f"study {spec.name!r} has several objectives, so no single best "
                               f"trial: choose one with --trial N (its Pareto front: trials "
                               f"{front})", ExitStatus.BAD_INPUT)
        number = study.best_trial.number
    found = [t for t in trials if t.number == number]
    if not found:
        raise CommandError(f"study {spec.name!r} has no trial {number} (it has {len(trials)}, "
                           "numbered from 0)", ExitStatus.BAD_INPUT)
    trial = found[0]
    if trial.state == TrialState.PRUNED:
        ran = f"after {trial.user_attrs['epochs']} of {spec.base.training.epochs} epochs" \
            if "epochs" in trial.user_attrs else "early"
        raise CommandError(f"trial {number} of study {spec.name!r} is PRUNED (the pruner "
                           f"stopped it {ran}: its config would not reproduce its value); "
                           "expected a COMPLETE trial", ExitStatus.BAD_INPUT)
    if trial.state != TrialState.COMPLETE:
        raise CommandError(f"trial {number} of study {spec.name!r} is {trial.state.name}; "
                           "expected a COMPLETE trial",
                           ExitStatus.BAD_INPUT)
    return trials[trial.user_attrs[DUPLICATE_OF]] if DUPLICATE_OF in trial.user_attrs else trial


def trial_config(spec: StudySpec, trial: optuna.trial.FrozenTrial) -> RunConfig:
    """The run config that reproduces ``trial``."""
    return run_config_of(spec.base_config(), _params(spec, trial))


def export_best(spec: StudySpec, out: str | Path, register: bool = False,
                trial: int | None = None, model_file: Path | None = None) -> tuple[int, Path]:
    """Write the config YAML of the best trial (or of trial number ``trial``) to ``out``
    (atomically); optionally register its model (or ``model_file``, e.g. the model
    `musicdet train --config` made from that YAML) as ``<registered_model>@champion``.
    Returns the trial number and the path."""
    if model_file is not None and not register:
        raise ConfigError("--model", "names the model to register: it needs --register")
    chosen = chosen_trial(spec, load_study(spec), trial)
    if model_file is not None:
        load_model(model_file)  # a bad model file is refused before anything is written
    trial_config(spec, chosen).save(out)
    if register:
        register_champion(spec, chosen, model_file)
    return chosen.number, Path(out)


def register_champion(spec: StudySpec, trial: optuna.trial.FrozenTrial,
                      model_file: Path | None = None) -> int:
    """Register the pyfunc model ``trial``'s MLflow run logged (or ``model_file``, logged as
    a pyfunc model of the experiment, tagged with the trial); alias it `champion`.

    A run tracked before trial models were pyfunc models holds only its ``model/model.pt``
    artifact: that file is logged as a pyfunc model of the run first.
    """
    settings = study_settings(spec)
    tracker = StudyTracker(settings, spec.name, create=False)
    origin = trial_origin(trial)
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`{ORIGIN}` = '{origin}' and tags.`{ROLE}` = 'trial'", max_results=1)
    if not runs:
        raise CommandError(f"no MLflow run for trial {trial.number} of study {spec.name!r} in "
                           f"{hide_password(settings.tracking_uri)}")
    run_id = runs[0].info.run_id
    if model_file is not None:
        model = tracker.log_model(None, model_file, {"retrained_from_trial": str(trial.number)})
    else:
        model = tracker.run_model(run_id) or _log_artifact_model(tracker, run_id)
    client, name = tracker.client, settings.registered_model
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(
        name, source=model.artifact_location, run_id=run_id, model_id=model.model_id,
        tags={"study": spec.name, "optuna_trial": str(trial.number)})
    client.set_registered_model_alias(name, "champion", version.version)
    return int(version.version)


def _log_artifact_model(tracker: StudyTracker, run_id: str) -> LoggedModel:
    """Log run ``run_id``'s ``model/model.pt`` artifact as its pyfunc model."""
    with tempfile.TemporaryDirectory(prefix="musicdet-champion-") as tmp:
        try:
            path = tracker.client.download_artifacts(run_id, f"model/{MODEL}", tmp)
        except MlflowException as error:
            raise CommandError(f"MLflow run {run_id} holds no model (no logged model, no "
                               f"model/{MODEL} artifact): {error.message}") from None
        return tracker.log_model(run_id, Path(path))


def _params(spec: StudySpec, trial: optuna.trial.FrozenTrial) -> dict:
    return complete_params(spec.search, trial.params)
