"""Stale trials and retries (SQLite and a real PostgreSQL): a RUNNING trial of a dead driver,
with or without a first heartbeat, is failed and requeued once the grace period has passed;
a driver's own trials never are; a retry whose enqueueing was lost is made by the next pass,
and never twice; drivers' clocks play no part (heartbeats are timed by the database)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta

import optuna
import pytest
import sqlalchemy
from optuna.storages._rdb import models
from optuna.trial import TrialState
from studyutil import postgres_databases

from search.study import FAIL_REASON, SURPLUS, StudyStorage, requeue, requeue_lost, trial_origin

GRACE = 2  # seconds


@contextmanager
def study_on(kind: str, tmp_path) -> Iterator[tuple[optuna.Study, StudyStorage]]:
    """A fresh study on ``kind`` storage with heartbeats (1 s) and GRACE."""
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        url = f"sqlite:///{tmp_path}/optuna.db" if kind == "sqlite" else \
            stack.enter_context(postgres_databases(1))[0]
        storage = StudyStorage(url, heartbeat_interval=1, grace_period=GRACE,
                               heartbeat_stale_trial_callback=requeue)
        yield optuna.create_study(study_name="stale", storage=storage), storage
        storage.engine.dispose()  # before the database is dropped


def ask(study: optuna.Study, count: int) -> list[optuna.Trial]:
    trials = [study.ask() for _ in range(count)]
    for trial in trials:
        trial.suggest_float("alpha", 0.0, 1.0)
    return trials


def retries(study: optuna.Study) -> dict[int, list[dict]]:
    """Enqueued retries: origin → fixed parameters of each."""
    found: dict[int, list[dict]] = {}
    for trial in study.trials:
        if trial.state == TrialState.WAITING:
            found.setdefault(trial_origin(trial), []).append(trial.system_attrs["fixed_params"])
    return found


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_trials_of_dead_drivers_are_requeued_even_without_a_first_heartbeat(
        kind: str, tmp_path) -> None:
    with study_on(kind, tmp_path) as (study, storage):
        never_beat, beat_once, alive, own = ask(study, 4)
        for trial in (beat_once, alive, own):
            storage.record_heartbeat(trial._trial_id)
        storage.own_trials.add(own._trial_id)

        optuna.storages.fail_stale_trials(study)  # all are younger than the grace period
        assert [t.state for t in study.trials] == [TrialState.RUNNING] * 4

        time.sleep(GRACE + 1.5)
        storage.record_heartbeat(alive._trial_id)  # `own` has not beaten since: still not stale
        optuna.storages.fail_stale_trials(study)
        states = [t.state for t in study.trials]
        assert states[:4] == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING,
                              TrialState.RUNNING]
        assert retries(study) == {0: [never_beat.params], 1: [beat_once.params]}

        optuna.storages.fail_stale_trials(study)  # failed once, requeued once
        requeue_lost(study)
        assert len(study.trials) == 6


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("skew_hours", [-1, 1])
def test_a_trial_started_by_a_driver_with_a_skewed_clock_expires_after_the_grace_period(
        kind: str, skew_hours: int, tmp_path) -> None:
    """Its start time, written by the driver that created it (Optuna uses the driver's local
    clock there), an hour behind or ahead: neither failed at once nor kept past the grace."""
    with study_on(kind, tmp_path) as (study, storage):
        (never_beat,) = ask(study, 1)
        skewed = datetime.now() + timedelta(hours=skew_hours)
        with storage.engine.begin() as connection:
            connection.execute(sqlalchemy.update(models.TrialModel).where(
                models.TrialModel.trial_id == never_beat._trial_id).values(datetime_start=skewed))

        optuna.storages.fail_stale_trials(study)
        assert study.trials[0].state == TrialState.RUNNING
        time.sleep(GRACE + 1.5)
        optuna.storages.fail_stale_trials(study)
        assert study.trials[0].state == TrialState.FAIL
        assert retries(study) == {0: [never_beat.params]}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_lost_requeue_is_made_by_the_next_pass_once(kind: str, tmp_path) -> None:
    with study_on(kind, tmp_path) as (study, _):
        lost, failed, surplus, requeued = ask(study, 4)
        study.tell(lost, state=TrialState.FAIL)  # its driver died before enqueueing a retry
        failed.set_user_attr(FAIL_REASON, "ValueError: bad")
        study.tell(failed, state=TrialState.FAIL)
        surplus.set_user_attr(SURPLUS, True)
        study.tell(surplus, state=TrialState.FAIL)
        study.tell(requeued, state=TrialState.FAIL)
        requeue(study, study.trials[3])
        requeue(study, study.trials[3])  # by a second driver that also found it stale

        requeue_lost(study)
        requeue_lost(study)
        assert retries(study) == {0: [lost.params], 3: [requeued.params]}
