"""Run a study: Optuna samples, Ray Tune dispatches trials, the driver tracks them in MLflow.

The study's rules (heartbeats, retries, the exact trial budget) live in ``search.study``. Each
driver session is a fresh Tuner (never ``Tuner.restore``): Ray's experiment snapshot lags
behind the Optuna study, the study does not.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO
from unittest import mock

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from musicdet.config import METRIC_DIRECTIONS, RunConfig
from musicdet.examples import validation_examples
from musicdet.train import PreparedData, SharedData

from .export import PARETO_TABLE, pareto_table
from .repeats import SeedData, mean_sd, metric_name, run_repeated_trial, trial_resources
from .resources import on_device, smallest_object_store, trial_data, trial_device
from .significance import compare_top
from .space import complete_params, describe, logged_params, sample
from .spec import TRAINING_SECONDS, SearchSpec, StudySpec, hide_password
from .study import (
    DUPLICATE_OF,
    FAIL_REASON,
    LOG,
    SURPLUS,
    Heartbeat,
    StudyStorage,
    duplicate_source,
    lost_database,
    open_storage,
    open_study,
    pareto_front,
    requeue,
    requeue_lost,
    tally,
    trial_origin,
)
from .tracking import ORIGIN, StudyTracker, study_settings
from .trainable import (
    FAILED,
    NODE_ID,
    OBJECTIVE,
    artifact_files,
    best_epoch,
    epoch_history,
    epoch_objectives,
    failure_reason,
    kept_folder,
    kept_model,
    objective_keys,
    objective_values,
    run_trial,
    seed_folders,
    seed_number,
    trial_dir,
    worker_info,
    write_trial_plots,
)

RAY_NODE, PARENT_ATTR = "ray_node_id", "mlflow_parent_run"
EPOCH_METRICS = ("train_loss", "val_loss", "val_auc", "val_pauc_low_fpr", "val_eer", "val_recall",
                 "val_f1", "val_precision", "val_threshold", "lr", "degenerate_batches", "seconds",
                 "train_val_loss", "train_val_auc", "train_val_pauc_low_fpr", "train_val_eer",
                 "train_val_recall", "train_val_f1")  # train_val_*: the data's own split, in a
                                                      # run with a validation: set (val_* on it)
WORKERS_SOFT_LIMIT = "RAY_num_workers_soft_limit"  # idle workers Ray keeps (see _start_local_ray)
WAIT_SECONDS = 1.0  # poll interval while other drivers' trials decide whether more are needed
# Each per-epoch checkpoint forces a Tune snapshot; harmless, but Tune warns about it.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


# ---------------------------------------------------------------- the searcher


class DeferredLoss:
    """A lost database connection met inside a Tune hook that Tune would only log (trial
    completion): kept here and raised at the driver's next step, so the driver stops with one
    clear line and ``--resume`` picks up what was not recorded."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            if lost_database(error) is None:
                raise
            self.error = self.error or error

    def raise_if_lost(self) -> None:
        if self.error is not None:
            raise self.error


def trial_space(search: SearchSpec, trial: optuna.Trial) -> dict[str, Any]:
    """Sampled loss parameters plus the trial's number and origin (for folders and runs)."""
    params = sample(trial, search)
    return {**params, "trial_number": trial.number,
            "origin": trial_origin(trial)}


def make_sampler(search: SearchSpec, offset: int) -> optuna.samplers.BaseSampler:
    """Seeded sampler; ``offset`` (trials already in the study) decorrelates later drivers."""
    seed = search.seed + offset
    if search.sampler == "tpe":
        with warnings.catch_warnings():  # `group` (conditional spaces) is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)  # grid: the enqueued points come first


DuplicateHook = Callable[[optuna.Trial, optuna.trial.FrozenTrial, dict[str, Any]], None]
"""Called with a duplicate about to be told, the trial it copies and its configuration."""


class StudySearcher(OptunaSearch):
    """OptunaSearch that keeps the study's trial budget exact across drivers and restarts.

    A multi-objective study tells Optuna one value per objective (`objective_keys` of the
    results) and records no intermediate values (Optuna keeps none for such a study).
    """

    def __init__(self, spec: StudySpec, storage: StudyStorage,
                 heartbeat: Heartbeat, offset: int, workdir: Path, lost: DeferredLoss,
                 on_duplicate: DuplicateHook | None = None) -> None:
        objectives = spec.search.objectives
        self._keys = objective_keys([o.metric for o in objectives])
        multi = spec.search.multi_objective
        super().__init__(space=partial(trial_space, spec.search),
                         metric=self._keys if multi else OBJECTIVE,
                         mode=[o.mode for o in objectives] if multi else objectives[0].mode,
                         sampler=make_sampler(spec.search, offset), study_name=spec.name,
                         storage=storage)
        self._multi = multi
        self._n_trials = int(spec.search.n_trials or 0)
        self._search, self._epochs = spec.search, spec.base.training.epochs
        self._heartbeat = heartbeat
        self._workdir = workdir
        self._lost = lost
        self._on_duplicate = on_duplicate
        self._waiting: dict[int, tuple[optuna.Trial, int]] = {}  # duplicates of RUNNING trials

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner into tuner.pkl: the copy holds no storage (its URL's password)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_storage", "_ot_study")}

    def suggest(self, trial_id: str) -> dict | str | None:
        with warnings.catch_warnings():  # heartbeats outside Study.optimize: our own thread beats
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            return self._suggest(trial_id)

    def _suggest(self, trial_id: str) -> dict | str | None:
        optuna.storages.fail_stale_trials(self._ot_study)
        requeue_lost(self._ot_study)
        self._settle_duplicates()
        while True:  # each duplicate is recorded (or waits) and counts: at most n_trials rounds
            now = tally(self._ot_study.get_trials(deepcopy=False))
            if not now.waiting and now.counted >= self._n_trials:
                if now.running > len(self._live()):  # others' trials may still be requeued
                    if not self._live():
                        time.sleep(WAIT_SECONDS)
                    return None
                return Searcher.FINISHED
            config = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            trials = self._ot_study.get_trials(deepcopy=False)
            if tally(trials, below=ot_trial.number).counted >= self._n_trials:
                ot_trial.set_user_attr(SURPLUS, True)
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
                del self._ot_trials[trial_id]
                return None
            self._heartbeat.add(ot_trial._trial_id)
            source = duplicate_source(self._search, trials, ot_trial)
            if source is None:
                return config
            del self._ot_trials[trial_id]  # not for Ray: ask the sampler again
            self._waiting[ot_trial._trial_id] = (ot_trial, source)
            self._settle_duplicates()

    def _settle_duplicates(self) -> None:
        """Record each waiting duplicate whose source has ended: with the source's result if
        COMPLETE or PRUNED; if it failed, fail and requeue the duplicate, to be trained."""
        if not self._waiting:
            return
        latest = {trial_origin(t): t for t in self._ot_study.get_trials(deepcopy=False)}
        for trial_id, (ot_trial, origin) in list(self._waiting.items()):
            source = latest[origin]
            if not source.state.is_finished():
                continue
            del self._waiting[trial_id]
            if source.state == TrialState.FAIL:
                self._requeue(ot_trial)
            else:
                self._heartbeat.discard(trial_id)
                self._record_duplicate(ot_trial, source)

    def _record_duplicate(self, ot_trial: optuna.Trial,
                          source: optuna.trial.FrozenTrial) -> None:
        """Tell ``ot_trial`` the result of ``source`` (same configuration), untrained."""
        ot_trial.set_user_attr(DUPLICATE_OF, source.user_attrs.get(DUPLICATE_OF, source.number))
        if "epochs" in source.user_attrs:
            ot_trial.set_user_attr("epochs", source.user_attrs["epochs"])
        self._report(ot_trial, source.intermediate_values)
        if self._on_duplicate is not None:  # first: a retry of an untold trial continues its run
            self._on_duplicate(ot_trial, source, complete_params(self._search, ot_trial.params))
        if source.state == TrialState.COMPLETE:
            self._ot_study.tell(ot_trial, source.values)
        else:
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Record the epoch's objective as an intermediate value, step = epoch (Ray's own
        OptunaSearch uses its iteration count, and never reports a trial's last result)."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and trial_id not in self._completed_trials \
                and FAILED not in result:
            self._report(ot_trial, {int(result["epoch"]): result[OBJECTIVE]})

    def _report(self, ot_trial: optuna.Trial, values: dict[int, float]) -> None:
        """Report the finite ``values`` (by epoch) that ``ot_trial`` does not hold yet (none
        once it has ended: another driver may have failed it as stale; none at all in a
        multi-objective study)."""
        if self._multi:
            return
        held = self._storage.get_trial(ot_trial._trial_id)
        for step, value in sorted(values.items()):
            if step not in held.intermediate_values and math.isfinite(value) \
                    and not held.state.is_finished():
                ot_trial.report(value, step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        with self._lost.deferred():
            self._complete(trial_id, result, error)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        self._heartbeat.discard(ot_trial._trial_id)
        if self._storage.get_trial(ot_trial._trial_id).state.is_finished():
            # another driver failed it as stale (this one's heartbeats did not reach the
            # database): its retry carries the configuration
            self._completed_trials.add(trial_id)
            return
        folder = trial_dir(self._workdir, trial_origin(ot_trial))
        if node := worker_info(folder).get(NODE_ID):
            ot_trial.set_user_attr(RAY_NODE, node)
        state, value, attrs = self._outcome(result, error, folder)
        for key, attr in attrs.items():
            ot_trial.set_user_attr(key, attr)
        if state != TrialState.FAIL:  # every epoch, also those of a dead driver's attempt
            metric = self._search.primary.metric
            last = int(result.get("epoch", 0)) if result else 0
            values = {e: v for e, v in epoch_objectives(epoch_history(folder), metric).items()
                      if e <= last}
            if result and OBJECTIVE in result:
                values[last] = result[OBJECTIVE]
            self._report(ot_trial, values)
        # not OptunaSearch.on_trial_complete: it would log a lost connection and go on
        self._ot_study.tell(ot_trial, value, state=state, skip_if_finished=True)
        self._completed_trials.add(trial_id)

    def _outcome(self, result: dict | None, error: bool, folder: Path
                 ) -> tuple[TrialState, float | list[float] | None, dict[str, Any]]:
        """Optuna state, value (one per objective if several) and user attributes of a trial
        that Tune ended."""
        values = [(result or {}).get(key) for key in self._keys]
        if result and FAILED in result:
            return TrialState.FAIL, None, {FAIL_REASON: result[FAILED]}
        if error:
            return TrialState.FAIL, None, {FAIL_REASON: failure_reason(folder)}
        for key, value in zip(self._keys, values, strict=True):
            if value is not None and not math.isfinite(value):
                return TrialState.FAIL, None, {FAIL_REASON: f"{key} is {value}"}
        epochs = int(result.get("epoch", 0)) if result else 0
        if None in values or epochs < self._epochs:  # the scheduler stopped it early
            return TrialState.PRUNED, None, {"epochs": epochs} if result else {}
        return TrialState.COMPLETE, values if self._multi else values[0], {"epochs": epochs}

    def release(self) -> None:
        """Requeue this driver's unfinished trials, waiting duplicates too (the driver is
        stopping)."""
        for trial_id in self._live():
            if self._requeue(self._ot_trials[trial_id]):
                self._completed_trials.add(trial_id)
        for ot_trial, _ in self._waiting.values():
            self._requeue(ot_trial)
        self._waiting.clear()

    def _requeue(self, ot_trial: optuna.Trial) -> bool:
        """Fail ``ot_trial`` and enqueue its configuration again; False if it had ended."""
        self._heartbeat.discard(ot_trial._trial_id)
        try:
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            return False
        requeue(self._ot_study, self._ot_study._storage.get_trial(ot_trial._trial_id))
        return True

    def _live(self) -> list[str]:
        return [t for t in self._ot_trials if t not in self._completed_trials]

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the Optuna storage holds the study (Tuner.restore is not used)."""


# ---------------------------------------------------------------- MLflow and progress


class TrackingCallback(tune.Callback):
    """Streams trial results (on the driver) to MLflow and prints one line per finished trial."""

    def __init__(self, tracker: StudyTracker, parent_id: str, workdir: Path, metric: str,
                 epochs: int, n_trials: int, progress: bool, lost: DeferredLoss,
                 metrics: Sequence[str] = ()) -> None:
        self.tracker, self.parent_id, self.workdir = tracker, parent_id, workdir
        self.lost = lost
        self.metric, self.epochs, self.n_trials = metric, epochs, n_trials
        self.metrics = list(metrics) or [metric]  # all objectives, ``metric`` first
        self.progress = progress
        self.runs: dict[str, str] = {}
        self.finished = 0
        self.best: tuple[float, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles callbacks into tuner.pkl: the copy holds no tracker (its backend's URL)."""
        return {k: v for k, v in self.__dict__.items() if k != "tracker"}

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self.lost.raise_if_lost()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        config = trial.config
        run_id = self.runs[trial.trial_id] = self.tracker.trial_run(
            self.parent_id, config["origin"], config["trial_number"], trial.trial_id,
            logged_params(config))
        self._backfill(run_id, trial_dir(self.workdir, config["origin"]))

    def _backfill(self, run_id: str, folder: Path) -> None:
        """Log the epochs a dead worker checkpointed but whose reports never reached the driver
        (the retry resumes after them, so it will not report them)."""
        history = epoch_history(folder)
        logged = self.tracker.logged_epochs(run_id) if history else set()
        for epoch, metrics in enumerate(history, start=1):
            if epoch not in logged:
                self.tracker.log_epoch(run_id, _epoch_metrics(metrics), epoch)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if FAILED in result or trial.trial_id not in self.runs:
            return
        self.tracker.log_epoch(self.runs[trial.trial_id], _epoch_metrics(result),
                               int(result["epoch"]))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if FAILED in last:
            self._finish(trial, "FAILED", last[FAILED])
        else:
            pruned = int(last.get("epoch", 0)) < self.epochs
            self._finish(trial, "PRUNED" if pruned else "FINISHED")

    def record_duplicate(self, trial: optuna.Trial, source: optuna.trial.FrozenTrial,
                         params: dict[str, Any]) -> None:
        """A small child run for a trial that copies ``source``'s result: its params, tags
        (``duplicate_of``), ``source``'s best_* summary; no curves, no artifacts."""
        status, copied = run_status(source, self.epochs) or "FINISHED", trial.user_attrs[
            DUPLICATE_OF]
        run_id = self.tracker.trial_run(self.parent_id, trial_origin(trial), trial.number, None,
                                        logged_params(params))
        self.tracker.client.set_tag(run_id, DUPLICATE_OF, str(copied))
        summary = best_summary(trial_dir(self.workdir, trial_origin(source)), self.metric)
        self.tracker.finish_trial(run_id, status, summary, [])
        self.finished += 1
        if self.progress:
            print(f"[{self.finished}/{self.n_trials}] trial {trial.number} {describe(params)}: "
                  f"{status} as trial {copied} (same configuration, not trained) "
                  f"{self._objectives_text(source.values or [math.nan] * len(self.metrics))}",
                  flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error_file = getattr(trial, "error_file", None)
        reason = Path(error_file).read_text()[-3000:] if error_file and os.path.exists(
            error_file) else "the trial raised an exception"
        self._finish(trial, "FAILED", reason)

    def _finish(self, trial: Any, status: str, reason: str | None = None) -> None:
        with self.lost.deferred():
            self._end_run(trial, status, reason)

    def _end_run(self, trial: Any, status: str, reason: str | None) -> None:
        run_id = self.runs.pop(trial.trial_id, None)
        folder = trial_dir(self.workdir, trial.config["origin"])
        if not (kept_folder(folder) / "roc.png").exists():
            write_trial_plots(folder, self.metric)
        if run_id is not None:
            self.tracker.finish_trial(run_id, status, best_summary(folder, self.metric),
                                      artifact_files(folder), reason,
                                      worker_info(folder).get(NODE_ID), kept_model(folder))
        self.finished += 1
        self._print(trial, status, reason)

    def _print(self, trial: Any, status: str, reason: str | None) -> None:
        if not self.progress:  # the stream itself is not kept: Ray pickles callbacks
            return
        last = trial.last_result or {}
        values = [last.get(key, math.nan) for key in objective_keys(self.metrics)]
        objective = values[0]
        sign = 1.0 if METRIC_DIRECTIONS[self.metric] == "maximize" else -1.0
        if status == "FINISHED" and not math.isnan(objective) and len(values) == 1 and (
                self.best is None or sign * objective > sign * self.best[0]):  # COMPLETE only
            self.best = (objective, trial.config["trial_number"])
        detail = reason.strip().splitlines()[-1][:120] if reason else \
            self._objectives_text(values)
        best = f"best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else ""
        print(f"[{self.finished}/{self.n_trials}] trial {trial.config['trial_number']} "
              f"{describe(trial.config)}: {status} {detail}  {best}", flush=True)

    def _objectives_text(self, values: Sequence[float]) -> str:
        """``objective 0.8123``, or each objective's metric and value if several."""
        if len(self.metrics) == 1:
            return f"{OBJECTIVE} {values[0]:.4f}"
        return ", ".join(f"{m} {v:.4g}" for m, v in zip(self.metrics, values, strict=True))


def close_orphan_runs(study: optuna.Study, tracker: StudyTracker, workdir: Path, metric: str,
                      epochs: int) -> int:
    """End the MLflow runs of finished trials that a killed driver left open; how many.

    A driver killed between telling Optuna a trial's outcome and ending its MLflow run leaves
    the run RUNNING; the next driver ends it from the study and the trial folder.
    """
    latest = {trial_origin(t): t for t in study.get_trials(deepcopy=False)}
    closed = 0
    for run in tracker.open_trial_runs():
        trial = latest.get(int(run.data.tags[ORIGIN]))
        status = run_status(trial, epochs) if trial else None
        if status is None:
            continue
        folder = trial_dir(workdir, int(run.data.tags[ORIGIN]))
        tracker.finish_trial(run.info.run_id, status, best_summary(folder, metric),
                             artifact_files(folder), trial.user_attrs.get(FAIL_REASON),
                             trial.user_attrs.get(RAY_NODE), kept_model(folder))
        closed += 1
    return closed


def run_status(trial: optuna.trial.FrozenTrial, epochs: int) -> str | None:
    """The MLflow status of a finished trial (None while it is not finished); a COMPLETE
    trial of fewer epochs is PRUNED too (how studies recorded them before PRUNED was told)."""
    if trial.state == TrialState.COMPLETE:
        return "PRUNED" if trial.user_attrs.get("epochs", epochs) < epochs else "FINISHED"
    if trial.state == TrialState.PRUNED:
        return "PRUNED"
    if trial.state == TrialState.FAIL and FAIL_REASON in trial.user_attrs:
        return "FAILED"
    return None


def best_summary(folder: Path, metric: str) -> dict[str, float]:
    """Metrics of the trial's best epoch by ``metric`` (the one its model.pt holds) and the
    training seconds up to it, from its history.json: MLflow logs them as best_*. A repeated
    trial's: each seed's best epoch, as mean, sd and per-seed values (`mean_sd`) over the
    seeds that have one."""
    folders = seed_folders(folder)
    if folders == [folder]:
        return _best_metrics(folder, metric)
    summaries = {seed_number(f): _best_metrics(f, metric) for f in folders}
    present = {seed: summary for seed, summary in summaries.items() if summary}
    return mean_sd(present) if present else {}


def _best_metrics(folder: Path, metric: str) -> dict[str, float]:
    history = epoch_history(folder)
    best = best_epoch(history, metric)
    if best is None:
        return {}
    seconds = objective_values(history, [metric, TRAINING_SECONDS])[1]
    return {**_epoch_metrics(best), "epoch": best["epoch"], TRAINING_SECONDS: seconds}


def _epoch_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The metrics of a reported epoch MLflow logs (with a repeated trial's sd and per-seed
    values of them)."""
    return {k: v for k, v in result.items() if metric_name(k) in EPOCH_METRICS}


# ---------------------------------------------------------------- the driver


@dataclass
class StudyResult:
    """How a driver session ended."""

    name: str
    finished: int
    n_trials: int
    best_value: float | None  # single-objective studies
    best_trial: int | None
    seconds: float
    experiment_id: str
    front: list[int] = field(default_factory=list)  # the Pareto front's trials (several objectives)


def scheduler(spec: StudySpec) -> TrialScheduler:
    """ASHA, median stopping or none, on the per-epoch objective."""
    mode, pruner = spec.search.primary.mode, spec.pruner
    if pruner.type == "asha":
        return ASHAScheduler(time_attr="epoch", metric=OBJECTIVE, mode=mode,
                             max_t=spec.base.training.epochs, grace_period=pruner.grace_epochs,
                             reduction_factor=pruner.reduction_factor)
    if pruner.type == "median":
        return MedianStoppingRule(time_attr="epoch", metric=OBJECTIVE, mode=mode,
                                  grace_period=pruner.grace_epochs, min_samples_required=2)
    return FIFOScheduler()


def connect_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at ``address`` or start a local one on loopback; True if started here."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING",
                               "configure_logging": True}
    if address:
        ray.init(address=address, **options)
    else:
        _start_local_ray(num_cpus, options)
    return True


def _start_local_ray(num_cpus: int | None, options: dict[str, Any]) -> None:
    """A Ray instance whose servers (GCS, raylet, workers, agents) listen on 127.0.0.1 only.

    Ray swaps a 127.0.0.1 node address for the host's own and then listens on every
    interface, unless it believes clusters are unsupported (as on macOS): it believes so while
    it starts, here and in the processes it spawns. A reachable instance: ``ray start --head``,
    then ``--address``.

    Ray keeps idle worker processes up to a soft limit, by default one per CPU; a trial of a
    repeated study (`search.repeats`) holds a process besides its seeds' task workers, so
    with the default the seeds' idle workers were killed between trials and each trial paid a
    fresh worker's imports (torch, musicdet: seconds, 18 s on a loaded 2-core machine). The
    limit here is two per CPU; set ``RAY_num_workers_soft_limit`` the same way on the nodes
    of a cluster started with ``ray start``.
    """
    from ray._private import ray_constants  # private, but Ray's only switch for this

    cpus = num_cpus or os.cpu_count() or 1
    with mock.patch.object(ray_constants, "ENABLE_RAY_CLUSTER", False), \
            mock.patch.dict(os.environ, {ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR: "0",
                                         WORKERS_SOFT_LIMIT: str(2 * cpus)}):
        ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", include_dashboard=False,
                 **options)


def run_study(spec: StudySpec, *, resume: bool = False, address: str | None = None,
              num_cpus: int | None = None, out: TextIO | None = sys.stdout,
              on_start: Callable[[optuna.Study], None] | None = None) -> StudyResult:
    """Run (or resume, or join) ``spec``'s study until it holds n_trials finished trials."""
    started = time.perf_counter()
    validation = spec.base_config().validation
    if validation is not None:  # a bad validation set fails before the study is created
        validation_examples(validation, spec.base.features, progress=False)
    settings = study_settings(spec)
    storage = open_storage(spec.storage_url, spec)
    tracker = StudyTracker(settings, spec.name)
    study = open_study(spec, storage, resume,
                       lambda: {PARENT_ATTR: tracker.create_parent(spec.to_dict())})
    parent_id = _parent_run(study, tracker, spec)
    if on_start is not None:
        on_start(study)
    todo = spec.search.n_trials - tally(study.get_trials(deepcopy=False)).finished  # type: ignore[operator]
    _say(out, f"study {spec.name}: {spec.search.n_trials - todo} of {spec.search.n_trials} "
              f"trials finished; storage {hide_password(spec.storage_url)}")
    workdir, metric, epochs = spec.workdir, spec.search.primary.metric, spec.base.training.epochs
    close_orphan_runs(study, tracker, workdir, metric, epochs)
    if todo > 0:
        _dispatch(spec, study, storage, tracker, parent_id, address, num_cpus, out)
        close_orphan_runs(study, tracker, workdir, metric, epochs)
    front = pareto_front(study) if spec.search.multi_objective else []
    significance = compare_top(spec, study)
    tracker.summarise(parent_id, study, spec.workdir / "summary", front, {
        **({PARETO_TABLE: pareto_table(spec, study)} if front else {}),
        **(significance.texts() if significance is not None else {})})
    final = tally(study.get_trials(deepcopy=False))
    if final.finished >= spec.search.n_trials and not final.running:  # type: ignore[operator]
        tracker.end_parent(parent_id)
    best = None if spec.search.multi_objective else _best(study)
    return StudyResult(spec.name, final.finished, int(spec.search.n_trials or 0),
                       best.value if best else None, best.number if best else None,
                       time.perf_counter() - started, tracker.experiment_id,
                       [t.number for t in front])


def _dispatch(spec: StudySpec, study: optuna.Study, storage: StudyStorage,
              tracker: StudyTracker, parent_id: str, address: str | None,
              num_cpus: int | None, out: TextIO | None) -> None:
    """Start or join Ray, say where trials train and how they get features, then tune."""
    started_ray = connect_ray(address, num_cpus)
    try:
        device = trial_device(spec.resources, ray.cluster_resources().get("GPU", 0.0))
        if device.note:
            _say(out, device.note)
        config = on_device(spec.base_config(), device)
        data, line = trial_data(spec, config, out is not None, smallest_object_store())
        _say(out, line)
        _tune(spec, study, storage, tracker, parent_id, config, data, device.gpus, out)
    finally:
        if started_ray:
            ray.shutdown()


def _tune(spec: StudySpec, study: optuna.Study, storage: StudyStorage, tracker: StudyTracker,
          parent_id: str, config: RunConfig, data: PreparedData | SharedData, gpus: float,
          out: TextIO | None) -> None:
    """One Tuner session over the study; on any exit this driver's live trials are requeued."""
    heartbeat = Heartbeat(storage, spec.storage.heartbeat_seconds)
    workdir = spec.workdir
    lost = DeferredLoss()
    metrics = [objective.metric for objective in spec.search.objectives]
    callback = TrackingCallback(tracker, parent_id, workdir, metrics[0],
                                spec.base.training.epochs,
                                int(spec.search.n_trials or 0), out is not None, lost, metrics)
    searcher = StudySearcher(spec, storage, heartbeat, offset=len(study.trials), workdir=workdir,
                             lost=lost, on_duplicate=callback.record_duplicate)
    repeats = spec.search.repeats
    function = run_trial if repeats == 1 else partial(
        run_repeated_trial, repeats=repeats,
        hows=[objective.aggregate for objective in spec.search.objectives])
    trainable = tune.with_resources(
        tune.with_parameters(function, base=config.to_dict(), workdir=str(workdir),
                             data=data if repeats == 1 else SeedData(ray.put(data)),
                             metrics=metrics),
        trial_resources(replace(spec.resources, gpus=gpus), repeats),
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler(spec),
                                    num_samples=int(spec.search.n_trials or 0),
                                    max_concurrent_trials=spec.resources.max_concurrent,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
            storage_path=str(workdir / "ray"),
            failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[callback], verbose=0,
        ),
    )
    try:
        tuner.fit()
    finally:
        _stop(searcher, heartbeat, tracker, callback.runs.values())


def _stop(searcher: StudySearcher, heartbeat: Heartbeat, tracker: StudyTracker,
          open_runs: Iterable[str]) -> None:
    """Requeue this driver's live trials and mark their runs KILLED; with the database gone,
    leave that to the next driver (the trials' heartbeats stop, so they go stale)."""
    try:
        searcher.release()
        for run_id in open_runs:
            tracker.client.set_terminated(run_id, "KILLED")
    except Exception as error:
        if lost_database(error) is None:
            raise
        LOG.warning("could not requeue this driver's trials (%s); the next driver will",
                    lost_database(error))
    finally:
        heartbeat.stop()


def _parent_run(study: optuna.Study, tracker: StudyTracker, spec: StudySpec) -> str:
    """The study's MLflow parent run: made once, its id kept in the Optuna study."""
    parent = study.user_attrs.get(PARENT_ATTR)
    if parent is None:
        parent = tracker.create_parent(spec.to_dict())
        study.set_user_attr(PARENT_ATTR, parent)
    else:
        tracker.client.update_run(parent, status="RUNNING")
    return parent


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return study.best_trial if complete else None


def _say(out: TextIO | None, line: str) -> None:
    if out is not None:
        print(line, file=out, flush=True)
