"""The Optuna study in its RDB storage: opening it, stale trials and retries, the trial budget.

The study is the single source of truth, which is what makes ``--resume`` and several
drivers safe:

- A driver records a heartbeat for each trial it runs. A RUNNING trial whose heartbeat (or,
  without one, the first look at it by any driver) is older than ``storage.grace_seconds``
  belonged to a dead driver: any driver marks it FAIL and enqueues its parameters again
  (``retry_of`` = the original trial number), so the retry continues the same trial folder
  (checkpoint) and MLflow run. Heartbeats are timed by the database's clock only. A driver
  that stops on Ctrl-C or an error requeues its own running trials at once; a retry whose
  enqueueing the database lost is made by the next pass.
- A trial *counts* when it is COMPLETE, PRUNED, FAILED for a reason of its own (it raised,
  non-finite loss), RUNNING or WAITING. A new trial is asked for only while fewer than
  ``n_trials`` count; one that another driver made surplus (more than ``n_trials`` counted
  trials with lower numbers) is marked FAIL/surplus and never run. So the study ends with
  exactly ``n_trials`` finished trials and unique trial numbers, however often drivers die.
- Optuna's conventions, so its own tools (optuna-dashboard, plots, samplers) read the study
  right: a trial the scheduler stopped early is PRUNED (its value is its last intermediate
  value; only COMPLETE trials are ranked); every epoch's objective is an intermediate value
  with step = epoch (1, 2, ...); the study's metric names are the objectives' metrics.
- A multi-objective study (``search.objective`` a list) has one direction per objective and
  its trials one value each (its result is the Pareto front, ``study.best_trials``). Optuna
  keeps no intermediate values for such a study (``Trial.report`` is single-objective only),
  so none are recorded: the scheduler still stops trials on the first objective, and those
  are PRUNED without a value.
- No configuration is trained twice: a trial whose configuration (`complete_params`: fixed
  values filled in, exact floats) equals an earlier COMPLETE or PRUNED trial's is recorded
  with that trial's state, values and intermediate values, ``duplicate_of`` = its number, and
  never reaches Ray; one equal to a RUNNING trial's waits (RUNNING, counted) until that one
  ends, and is trained after all if that one fails. Duplicates count towards ``n_trials``
  like any finished trial (as Optuna's FAQ returns the earlier value), so a space with fewer
  distinct points than ``n_trials`` (ce has no parameters) still ends.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages._rdb import models  # the trial and heartbeat tables (StudyStorage)
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState

from musicdet.configtools import ConfigError

from .space import complete_params, grid_points
from .spec import SearchSpec, StudySpec, hide_password
from .tracking import retry_schema_race

RETRY_OF, FAIL_REASON, SURPLUS = "retry_of", "fail_reason", "surplus"
DUPLICATE_OF = "duplicate_of"  # the number of the trained trial whose result a trial copies
SPEC_ATTR = "musicdet_spec"
optuna.logging.set_verbosity(optuna.logging.WARNING)
LOG = optuna.logging.get_logger("musicdet")


class StudyStorage(optuna.storages.RDBStorage):
    """RDB storage with two amendments to Optuna's stale trials (those of dead drivers).

    - A RUNNING trial that never got a heartbeat gets one from the first driver that looks
      for stale trials, so it expires one grace period later like any other: a driver that
      dies between creating a trial and its first heartbeat (killed, or its connection dropped
      in that instant) leaves one, and Optuna alone never expires it. Every heartbeat, and
      the time it is compared with, is the database's clock (Optuna writes and reads them
      with SQL ``now()``), never a driver's: the drivers' clocks may disagree.
    - A driver never declares its own running trials (``own_trials``) stale, even when its
      heartbeats could not reach the database for longer than the grace period.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.own_trials: set[int] = set()  # ids of the trials this process runs and beats

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        for trial_id in self._never_beat(study_id):
            self.record_heartbeat(trial_id)  # a race with its own first beat is ignored
        return [trial_id for trial_id in super()._get_stale_trial_ids(study_id)
                if trial_id not in self.own_trials]

    def _never_beat(self, study_id: int) -> list[int]:
        """Ids of the study's RUNNING trials that have no heartbeat."""
        trial = models.TrialModel
        with _create_scoped_session(self.scoped_session) as session:
            return [trial_id for (trial_id,) in session.query(trial.trial_id).filter(
                trial.study_id == study_id, trial.state == TrialState.RUNNING,
                ~trial.heartbeats.any())]


def open_storage(url: str, spec: StudySpec) -> StudyStorage:
    """RDB storage with heartbeats; stale trials of dead drivers are requeued."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    def create() -> StudyStorage:
        with warnings.catch_warnings():  # heartbeats are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return StudyStorage(
                url, engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=spec.storage.heartbeat_seconds,
                grace_period=spec.storage.grace_seconds,
                heartbeat_stale_trial_callback=requeue,
            )

    try:
        return retry_schema_race(create)
    except Exception as error:  # sqlalchemy/psycopg raise many kinds; all mean "cannot open"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("storage.url", f"cannot open {hide_password(url)}: {first}") from None


def lost_database(error: BaseException) -> str | None:
    """One line saying why the database connection failed, if that is what ``error`` is
    (anywhere in its chain: Ray Tune and Optuna wrap it); None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError) \
                or getattr(current, "connection_invalidated", False):
            return str(current.orig if hasattr(current, "orig") else current).strip() \
                .splitlines()[0]
        current = current.__cause__ or current.__context__
    return None


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue the parameters of a trial that lost its driver, remembering where it came from
    (unless a later trial of the same configuration exists: a retry is made once)."""
    origin = trial_origin(trial)
    if any(t.number > trial.number and trial_origin(t) == origin
           for t in study.get_trials(deepcopy=False)):
        return
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: origin}, skip_if_exists=False)


def requeue_lost(study: optuna.Study) -> None:
    """Requeue configurations whose retry was never enqueued: their latest trial was failed
    (as stale, or released by its stopping driver) and the database went away before the
    retry was enqueued."""
    latest = {trial_origin(t): t for t in study.get_trials(deepcopy=False)}  # by number
    for trial in latest.values():
        if trial.state == TrialState.FAIL and not {FAIL_REASON, SURPLUS} & trial.user_attrs.keys():
            requeue(study, trial)


def trial_origin(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """The number of the first trial of this configuration (retries keep their folder and run)."""
    return trial.user_attrs.get(RETRY_OF, trial.number)


def spec_fingerprint(spec: StudySpec) -> dict[str, Any]:
    """What must not change between the drivers and sessions of one study."""
    base = spec.base_config().to_dict()
    base.pop("loss")
    for key in ("cache_dir", "path"):
        base["data"].pop(key)
    search = spec.to_dict()["search"]
    search.pop("n_trials")
    return {"base": base, "search": search}


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage, resume: bool,
               on_create: Callable[[], dict[str, Any]] = dict) -> optuna.Study:
    """Create the study (enqueueing a grid), or load it when resuming; the spec must match.

    ``on_create`` gives attributes (the MLflow parent run) that the creating driver stores
    before the spec fingerprint, which other drivers wait for.
    """
    directions = [objective.direction for objective in spec.search.objectives]
    fingerprint = json.dumps(spec_fingerprint(spec), sort_keys=True)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=directions)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.name, storage=storage)
        stored = _wait_for_attr(study, SPEC_ATTR)
        if not resume and study.trials:
            raise ConfigError("name", f"study {spec.name!r} already has {len(study.trials)} "
                              "trials; add --resume to continue it or choose a new name") from None
        if stored is not None and stored != fingerprint:
            raise ConfigError("name", f"study {spec.name!r} exists with a different base config "
                              "or search space; keep its spec or choose a new name") from None
        _name_metric(study, spec)
        return study
    _name_metric(study, spec)
    if spec.search.grid is not None:
        for point in grid_points(spec.search):
            study.enqueue_trial(point)
    for key, value in on_create().items():
        study.set_user_attr(key, value)
    study.set_user_attr(SPEC_ATTR, fingerprint)
    return study


def _name_metric(study: optuna.Study, spec: StudySpec) -> None:
    """Name the study's objectives (optuna-dashboard and plots show them); written once."""
    names = [objective.metric for objective in spec.search.objectives]
    if study.metric_names != names:
        with warnings.catch_warnings():  # marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)


def duplicate_source(search: SearchSpec, trials: list[optuna.trial.FrozenTrial],
                     trial: optuna.Trial) -> int | None:
    """Origin of the first earlier trial that trained, or is training, ``trial``'s
    configuration (COMPLETE, PRUNED or RUNNING, not itself a copy, not a retry of the same
    trial); None when the configuration is new or only ever failed."""
    config = complete_params(search, trial.params)
    origin = trial_origin(trial)
    for other in trials:
        if other.number < trial.number and other.state in _TRAINED \
                and DUPLICATE_OF not in other.user_attrs and trial_origin(other) != origin \
                and other.params.keys() == trial.params.keys() \
                and complete_params(search, other.params) == config:
            return trial_origin(other)
    return None


_TRAINED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def pareto_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The COMPLETE trials no other COMPLETE trial dominates (better or equal in every
    objective, better in one), by number; duplicates left out (they repeat their source)."""
    return sorted((t for t in study.best_trials if DUPLICATE_OF not in t.user_attrs),
                  key=lambda t: t.number)


def _wait_for_attr(study: optuna.Study, key: str, seconds: float = 30.0) -> Any:
    """A study attribute its creating driver is about to set (None if it never comes)."""
    deadline = time.monotonic() + seconds
    while key not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.2)
    return study.user_attrs.get(key)


@dataclass
class Tally:
    """Trials of a study by what they mean for the budget."""

    counted: int = 0  # COMPLETE, PRUNED, own-reason FAIL, RUNNING, WAITING
    finished: int = 0  # COMPLETE, PRUNED, own-reason FAIL
    waiting: int = 0
    running: int = 0


def tally(trials: list[optuna.trial.FrozenTrial], below: int | None = None) -> Tally:
    """Count ``trials`` (only those numbered below ``below`` if given)."""
    result = Tally()
    for trial in trials:
        if below is not None and trial.number >= below:
            continue
        done = trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            trial.state == TrialState.FAIL and FAIL_REASON in trial.user_attrs)
        result.finished += done
        result.waiting += trial.state == TrialState.WAITING
        result.running += trial.state == TrialState.RUNNING
        result.counted += done or trial.state in (TrialState.RUNNING, TrialState.WAITING)
    return result


class Heartbeat:
    """A daemon thread that records a heartbeat for each of this driver's running trials."""

    def __init__(self, storage: StudyStorage, interval: float) -> None:
        self._storage, self._interval = storage, interval
        self._ids = storage.own_trials
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)
        self._thread.start()

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner (so the searcher): a copy has no thread and beats no one."""
        return {"_interval": self._interval}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _ids=set(), _storage=None)

    def add(self, trial_id: int) -> None:
        with self._lock:
            self._ids.add(trial_id)
        self._storage.record_heartbeat(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception as error:  # a dropped connection must not kill the thread
                    LOG.warning("heartbeat failed: %s", lost_database(error) or error)


def study_counts(study: optuna.Study) -> Counter[str]:
    """Trials by state name (FAIL split into failed / requeued / surplus; DUPLICATE: the
    COMPLETE or PRUNED trials that copied an earlier trial's result)."""
    counts: Counter[str] = Counter()
    for trial in study.get_trials(deepcopy=False):
        name = "DUPLICATE" if DUPLICATE_OF in trial.user_attrs else trial.state.name
        if trial.state == TrialState.FAIL:
            name = ("FAIL" if FAIL_REASON in trial.user_attrs else
                    "SURPLUS" if SURPLUS in trial.user_attrs else "REQUEUED")
        counts[name] += 1
    return counts
