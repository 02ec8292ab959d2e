"""MLflow: one experiment per study, a parent run for the study, a nested child run per trial.

Only the study driver writes to MLflow (from the results Ray Tune streams back to it), so
trial workers never touch the tracking backend: several parallel trials cannot lock a
SQLite backend, and workers need no database credentials. Several drivers on one study
need a PostgreSQL backend. A trial's child run is keyed by its *origin* (the Optuna trial
number it first had), so a trial requeued after a driver died continues the same run.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import optuna
from mlflow import MlflowClient
from mlflow.entities import LoggedModel, Metric, Param, Run, RunStatus, RunTag

from musicdet.configtools import ConfigError, from_dict, load_yaml
from musicdet.errors import UnfinishedError
from musicdet.fsutil import write_text

from .figures import study_figures
from .pyfunc import log_detector
from .spec import (
    RUN_IT_FIRST,
    SETTINGS_FILE,
    MlflowSpec,
    StudySpec,
    check_database_url,
    hide_password,
    refuse_missing_sqlite,
)

T = TypeVar("T")
# MLflow logs each database error with its traceback before raising it; the driver reports the
# error itself, in one line (search.cli), so the logged copy is noise.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
ROLE, STUDY, TRIAL = "musicdet.role", "musicdet.study", "musicdet.trial"
ORIGIN = "musicdet.trial_origin"
# The UI view `musicdet-search ui` opens: MLflow keeps shared views in experiment tags.
SHARED_VIEW_TAG, TRIALS_VIEW = "mlflow.sharedViewState.", "musicdet-trials"
UI_CURVES = ("val_auc", "val_eer", "val_loss", "train_loss")
TERMINAL = {"FINISHED": RunStatus.FINISHED, "PRUNED": RunStatus.FINISHED,
            "FAILED": RunStatus.FAILED, "KILLED": RunStatus.KILLED}
OPTUNA_STATE = {"FINISHED": "COMPLETE", "PRUNED": "PRUNED", "FAILED": "FAIL"}  # tag optuna_state


@dataclass
class MlflowSettings:
    """Tracking backend, artifact root, experiment naming and registry name (mlflow.yaml)."""

    tracking_uri: str = "sqlite:///runs/mlflow.db"
    artifact_location: str = "runs/mlartifacts"  # experiment <name> stores under <this>/<name>
    experiment_prefix: str = "musicdet-"
    registered_model: str = "musicdet-detector"

    def __post_init__(self) -> None:
        if "://" in self.tracking_uri and not self.tracking_uri.startswith(("http", "file")):
            check_database_url(self.tracking_uri, "tracking_uri")


def study_settings(spec: StudySpec) -> MlflowSettings:
    """The study's MLflow settings: mlflow.yaml at its root with its ``mlflow:`` overrides,
    relative paths (a sqlite:/// file, the artifact location) resolved against the root."""
    settings = load_settings(spec.mlflow, spec.resolve(SETTINGS_FILE))
    location = settings.artifact_location
    return replace(settings, tracking_uri=spec.resolve_url(settings.tracking_uri),
                   artifact_location=location if "://" in location else str(spec.resolve(location)))


def load_settings(overrides: MlflowSpec, path: Path = Path(SETTINGS_FILE)) -> MlflowSettings:
    """mlflow.yaml at ``path`` (if present) with ``overrides`` applied; relative paths are
    left as they are (`study_settings` resolves them)."""
    data = (load_yaml(path) or {}) if path.exists() else {}
    data.update({f.name: getattr(overrides, f.name) for f in fields(overrides)
                 if getattr(overrides, f.name) is not None})
    try:
        return from_dict(MlflowSettings, data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error.key}", error.message) from None


def retry_schema_race(create: Callable[[], T], attempts: int = 8) -> T:
    """Call ``create`` again when it lost a race with another driver creating the same tables.

    Two drivers starting on a fresh PostgreSQL database both create the Optuna / MLflow schema;
    the loser gets a unique-constraint error once and succeeds on the next try.
    """
    for attempt in range(attempts):
        try:
            return create()
        except Exception as error:  # sqlalchemy wraps it; mlflow re-raises as MlflowException
            if attempt == attempts - 1 or not _is_schema_race(error):
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def _is_schema_race(error: BaseException) -> bool:
    text = f"{error} {error.__cause__}"
    return any(s in text for s in ("UniqueViolation", "already exists", "duplicate key"))


def absolute_sqlite(uri: str) -> str:
    """``sqlite:///relative.db`` made absolute (MLflow caches stores by URI per process)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


class StudyTracker:
    """The MLflow side of one study: experiment, parent run, child runs, summary.

    With ``create`` False (verbs that only read a study) a missing SQLite store or experiment
    raises `ConfigError` instead of being created.
    """

    def __init__(self, settings: MlflowSettings, study_name: str, create: bool = True) -> None:
        self.settings = settings = replace(settings, tracking_uri=absolute_sqlite(
            settings.tracking_uri))
        self.study_name, self.create = study_name, create
        if not create:
            refuse_missing_sqlite(settings.tracking_uri, "no MLflow store")
        self.client, self.experiment_id = retry_schema_race(self._connect)

    def _connect(self) -> tuple[MlflowClient, str]:
        """Client (its store creates or upgrades the schema) and the study's experiment id."""
        self.client = MlflowClient(tracking_uri=self.settings.tracking_uri)
        return self.client, self._experiment()

    @property
    def experiment_name(self) -> str:
        return f"{self.settings.experiment_prefix}{self.study_name}"

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        if not self.create:
            raise UnfinishedError(f"no MLflow experiment {self.experiment_name!r} in "
                                  f"{hide_password(self.settings.tracking_uri)}; {RUN_IT_FIRST}")
        location = Path(self.settings.artifact_location) / self.study_name
        artifact_uri = location if "://" in str(location) else location.resolve().as_uri()
        experiment_id = self.client.create_experiment(
            self.experiment_name, artifact_location=str(artifact_uri),
            tags={"mlflow.experimentKind": "custom_model_development", STUDY: self.study_name},
        )
        return experiment_id

    def create_parent(self, spec_dict: dict[str, Any]) -> str:
        """Start the study's parent run; log the spec as params and a YAML artifact."""
        run = self.client.create_run(self.experiment_id, run_name=f"study {self.study_name}",
                                     tags={ROLE: "study", STUDY: self.study_name})
        flat = _flatten({k: v for k, v in spec_dict.items() if k != "mlflow"})
        params = [Param(k, hide_password(str(v))[:6000]) for k, v in flat.items()]
        self.client.log_batch(run.info.run_id, params=params)
        return run.info.run_id

    def trial_run(self, parent_id: str, origin: int, number: int, ray_id: str | None,
                  params: dict[str, Any]) -> str:
        """The child run of trial ``origin`` (continued if a dead driver left it); ``ray_id``
        None: a duplicate, which Ray never runs."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ORIGIN}` = '{origin}' and tags.`{ROLE}` = 'trial'",
            max_results=1,
        )
        tags = {TRIAL: str(number), "optuna_trial_number": str(number),
                "status": "RUNNING", "loss_type": str(params["loss"]),
                **({"ray_trial_id": ray_id} if ray_id else {})}
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id, run_name=f"trial {origin} {params['loss']}",
                tags={"mlflow.parentRunId": parent_id, ROLE: "trial", STUDY: self.study_name,
                      ORIGIN: str(origin)},
            )
            run_id = run.info.run_id
            self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        return run_id

    def log_epoch(self, run_id: str, metrics: dict[str, float], epoch: int) -> None:
        """Per-epoch metrics with step = epoch."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in metrics.items()]
        )

    def logged_epochs(self, run_id: str) -> set[int]:
        """Epochs (steps) whose validation AUC the run holds."""
        return {m.step for m in self.client.get_metric_history(run_id, "val_auc")}

    def trial_runs(self) -> list[Run]:
        """Every trial's child run."""
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{ROLE}` = 'trial'", max_results=50000)

    def trial_runs_by_origin(self) -> dict[int, Run]:
        """Every trial's child run, by the trial's origin (`search.study.trial_origin`)."""
        return {int(r.data.tags[ORIGIN]): r for r in self.trial_runs()}

    def open_trial_runs(self) -> list[Run]:
        """Child runs not ended (RUNNING, or KILLED when their driver stopped)."""
        return [r for r in self.trial_runs() if r.info.status in ("RUNNING", "KILLED")]

    def finish_trial(self, run_id: str, status: str, summary: dict[str, float],
                     files: list[tuple[Path, str | None]], reason: str | None = None,
                     node_id: str | None = None, model: Path | None = None) -> None:
        """best_* summaries, ``files`` as artifacts (each with its artifact folder), the
        ``model`` file as a pyfunc LoggedModel (`search.pyfunc`), status and optuna_state tags,
        end the run."""
        if summary:
            self.log_epoch(run_id, {f"best_{k}": v for k, v in summary.items()}, 0)
        tags = [RunTag("status", status)]
        if status in OPTUNA_STATE:
            tags.append(RunTag("optuna_state", OPTUNA_STATE[status]))
        if reason:
            tags.append(RunTag("fail_reason", reason[:5000]))
        if node_id:
            tags.append(RunTag("ray_node_id", node_id))
        self.client.log_batch(run_id, tags=tags)
        for path, folder in files:
            self.client.log_artifact(run_id, str(path), folder)
        if model is not None:
            self.log_model(run_id, model)
        self.client.set_terminated(run_id, RunStatus.to_string(TERMINAL[status]))

    def log_model(self, run_id: str | None, model_file: Path,
                  tags: dict[str, str] | None = None) -> LoggedModel:
        """``model_file`` as a pyfunc LoggedModel of the study, an output of run ``run_id``
        (None: of no run)."""
        return log_detector(self.client, self.experiment_id, model_file, run_id,
                            tags={STUDY: self.study_name, **(tags or {})})

    def run_model(self, run_id: str) -> LoggedModel | None:
        """The model run ``run_id`` logged last, if any."""
        found = self.client.search_logged_models(
            [self.experiment_id], filter_string=f"source_run_id = '{run_id}'", max_results=1,
            order_by=[{"field_name": "creation_timestamp", "ascending": False}])
        return found[0] if found else None

    def summarise(self, parent_id: str, study: optuna.Study, folder: Path,
                  front: Sequence[optuna.trial.FrozenTrial] = (),
                  texts: dict[str, str] | None = None) -> None:
        """Trials table, figures, ``texts`` (file name → text: more tables) and the best_*
        metrics on the parent run; a multi-objective study: its Pareto ``front``
        (`search.study.pareto_front`) as a tag and in the figures instead."""
        folder.mkdir(parents=True, exist_ok=True)
        frame = study.trials_dataframe(attrs=("number", "state", "value", "params",
                                              "user_attrs", "duration"))
        write_text(folder / "trials.csv", frame.to_csv(index=False))
        self.client.log_artifact(parent_id, str(folder / "trials.csv"))
        for name, text in (texts or {}).items():
            write_text(folder / name, text)
            self.client.log_artifact(parent_id, str(folder / name))
        for path in study_figures(study, folder, front):
            self.client.log_artifact(parent_id, str(path), "figures")
        finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not finished:
            return
        now = int(time.time() * 1000)
        completed = Metric("completed_trials", float(len(finished)), now, 0)
        if len(study.directions) > 1:
            numbers = ",".join(str(t.number) for t in front)
            self.client.log_batch(parent_id, metrics=[completed],
                                  tags=[RunTag("pareto_trials", numbers)])
            return
        best = study.best_trial
        self.client.log_batch(parent_id, metrics=[
            Metric("best_objective", float(best.value), now, len(finished)), completed,
        ], tags=[RunTag("best_trial", str(best.number))])

    def end_parent(self, parent_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(parent_id, status)

    def publish_trials_view(self, metric: str = "val_auc", maximize: bool = True) -> None:
        """Store the UI view that ``ui_url`` opens as an experiment tag (MLflow's shared views)."""
        self.client.set_experiment_tag(self.experiment_id, f"{SHARED_VIEW_TAG}{TRIALS_VIEW}",
                                       json.dumps(trials_view_state(metric, maximize)))

    def ui_url(self, base: str) -> str:
        """The URL that opens this study's trials in the model-training view, charts shown.

        It names the view ``publish_trials_view`` stores: MLflow's URL parameters alone leave
        the trials collapsed under the study's run, and the charts show only visible runs.
        """
        query = (f"workflowType=machine_learning&compareRunsMode=CHART"
                 f"&viewStateShareKey={TRIALS_VIEW}")
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs?{query}"


def trials_view_state(metric: str = "val_auc", maximize: bool = True) -> dict[str, Any]:
    """MLflow UI state: runs grouped by role (trials flat, not nested), best trial first, all
    trials drawn individually, the per-epoch curves of ``metric`` and the losses first."""
    curves = [metric, *(m for m in UI_CURVES if m != metric)]
    section = "musicdet-curves"
    charts = [{"uuid": f"musicdet-{key}", "type": "LINE", "metricKey": key, "displayName": key,
               "metricSectionId": section, "isGenerated": True, "deleted": False,
               "runsCountToCompare": 10, "lineSmoothness": 0, "scaleType": "linear",
               "xAxisScaleType": "linear", "xAxisKey": "step", "selectedXAxisMetricKey": "",
               "yAxisKey": "metric", "yAxisExpressions": [], "ignoreOutliers": False,
               "useGlobalXaxisKey": True, "useGlobalLineSmoothing": True,
               "range": {}} for key in curves]
    return {
        "orderByKey": f"metrics.`best_{metric}`", "orderByAsc": not maximize,
        "groupBy": {"aggregateFunction": "average",
                    "groupByKeys": [{"mode": "tag", "groupByData": ROLE}]},
        "useGroupedValuesInCharts": False, "runsHiddenMode": "SHOW_ALL",
        "compareRunSections": [{"uuid": section, "name": "Model metrics", "display": True,
                                "isReordered": True, "deleted": False}],
        "compareRunCharts": charts,
    }


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
