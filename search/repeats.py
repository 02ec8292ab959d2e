"""Repeated seeds: one configuration trained with ``search.repeats`` = k seeds, as one Ray Tune
trial (so Optuna sees one trial, ASHA one set of reports).

The trial's function, `run_repeated_trial`, starts each seed (base.seed + i, i < k: it seeds
the initial weights, the windows drawn and the augmentation; the validation split stays the
base config's) as a Ray task in a bundle of the trial's placement group (`trial_resources`:
one bundle of ``resources.cpus`` per seed that runs at once, as many as the cluster holds, at
most k; the other seeds start as bundles free up). Each seed trains in ``trial-NNNN/seed-S``
with its own checkpoint, history.json and worker.json (process, node, seed, start and end:
Unix seconds).
Epoch e is reported to Tune once every seed has finished it (the last epoch once every seed
task has ended): each metric's mean over the seeds (its own name), sd (``<metric>_sd``) and
per-seed values (``<metric>_seedS``), and as each objective (`objective_keys`) the `aggregate`
of the seeds' values at the epoch each seed keeps so far, so ASHA decides on the aggregate.
The reported epochs are also the trial folder's history.json. When Tune stops the trial
(ASHA, the driver), its seed tasks are cancelled; a restarted trial resumes each seed from its
own checkpoint (the Tune checkpoint holds all k).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import ray
from ray import tune
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from scipy import stats

from musicdet.config import METRIC_DIRECTIONS, RunConfig
from musicdet.fsutil import write_text
from musicdet.train import NonFiniteLossError, PreparedData, SharedData, train

from .space import run_config_of
from .spec import OBJECTIVE_DIRECTIONS, ResourcesSpec
from .trainable import (
    CHECKPOINT,
    ERROR_FILE,
    FAILED,
    OBJECTIVE,
    epoch_history,
    link_checkpoints,
    objective_keys,
    objective_values,
    record_worker,
    seed_dir,
    take_tune_checkpoint,
    trial_dir,
    write_trial_plots,
)

LCB_LEVEL = 0.95  # one-sided confidence of `aggregate`'s lcb
POLL_SECONDS = 0.5  # how often the trial looks for epochs its seeds finished
PER_SEED = re.compile(r"_(sd|seed-?\d+)$")  # the suffixes of `mean_sd`'s sd and per-seed values


def seeds_of(base_seed: int, repeats: int) -> list[int]:
    """The seeds a configuration trains: ``base_seed`` + 0 .. repeats - 1."""
    return [base_seed + i for i in range(repeats)]


def aggregate(values: list[float], direction: str, how: str) -> float:
    """The objective of a configuration whose seeds reached ``values``: their mean, or (``lcb``)
    the pessimistic end of a one-sided `LCB_LEVEL` Student-t interval of that mean,
    mean ∓ t(LCB_LEVEL, k − 1)·sd/√k, below it for a maximised metric, above it for a minimised
    one (NaN if any value is)."""
    mean = fmean(values)
    if how == "mean" or math.isnan(mean):
        return mean
    half = float(stats.t.ppf(LCB_LEVEL, len(values) - 1)) * stdev(values) / math.sqrt(len(values))
    return mean - half if direction == "maximize" else mean + half


def mean_sd(per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """The metrics the seeds share: mean (the metric's own name), sd over the seeds
    (``<name>_sd``, with two or more) and each seed's value (``<name>_seedS``).

    No ``/`` in the names: MLflow's UI would give each prefix a chart section of its own,
    above the study's curves."""
    keys = [k for k in next(iter(per_seed.values())) if all(k in m for m in per_seed.values())]
    row: dict[str, float] = {}
    for key in keys:
        values = [m[key] for m in per_seed.values()]
        row[key] = fmean(values)
        if len(values) > 1:
            row[f"{key}_sd"] = stdev(values)
        row.update({f"{key}_seed{seed}": m[key] for seed, m in per_seed.items()})
    return row


def metric_name(key: str) -> str:
    """The metric a reported key is of (``val_auc_seed3``, ``val_auc_sd`` → ``val_auc``)."""
    return PER_SEED.sub("", key)


def aggregate_epoch(histories: dict[int, list[dict[str, float]]], epoch: int,
                    metrics: Sequence[str], hows: Sequence[str]) -> dict[str, float]:
    """Epoch ``epoch`` of the seeds' ``histories`` (by seed) as one row: `mean_sd` of their
    metrics and, under `objective_keys`, each objective's `aggregate` (how: ``hows``, one per
    metric) of the seeds' values at the epoch each keeps so far (`objective_values`)."""
    row = mean_sd({seed: h[epoch - 1] for seed, h in histories.items()})
    values = [objective_values(h[:epoch], metrics) for h in histories.values()]
    objectives = {key: aggregate([v[i] for v in values], OBJECTIVE_DIRECTIONS[metric], how)
                  for i, (key, metric, how) in enumerate(
                      zip(objective_keys(metrics), metrics, hows, strict=True))}
    return {**row, "epoch": epoch, **objectives}


def parallel_seeds(resources: ResourcesSpec, repeats: int, cluster: dict[str, float]) -> int:
    """How many seeds of a configuration run at once: as many as ``cluster`` (Ray's total
    resources) holds at ``resources`` each, at least 1, at most ``repeats``."""
    fits = cluster.get("CPU", 0.0) // resources.cpus
    if resources.gpus:
        fits = min(fits, cluster.get("GPU", 0.0) // resources.gpus)
    return int(max(1, min(repeats, fits)))


def trial_resources(resources: ResourcesSpec, repeats: int) -> dict[str, float] | \
        tune.PlacementGroupFactory:
    """What one trial reserves: ``resources`` (one seed), or for repeats a placement group with
    an empty head (the trial's own process) and one bundle per seed run at once."""
    if repeats == 1:
        return {"cpu": resources.cpus, "gpu": resources.gpus}
    bundle = {"CPU": resources.cpus, "GPU": resources.gpus}
    return tune.PlacementGroupFactory(
        [{}] + [bundle] * parallel_seeds(resources, repeats, ray.cluster_resources()))


@ray.remote(max_retries=0)
def train_seed(config: dict[str, Any], out: str, data: PreparedData | SharedData) -> None:
    """Train ``config`` in ``out`` (resuming its checkpoint; features of a shared cache
    memory-mapped here); its worker.json says where and when (``started``, and ``ended`` once
    trained: Unix seconds)."""
    if isinstance(data, SharedData):
        data = data.open()
    folder, when = Path(out), {"seed": config["seed"], "started": time.time()}
    folder.mkdir(parents=True, exist_ok=True)
    record_worker(folder, **when)
    train(RunConfig.from_dict(config), folder, data=data, progress=False)
    record_worker(folder, **when, ended=time.time())


@dataclass(frozen=True)
class SeedData:
    """The trials' data (`PreparedData` or `SharedData`), put in Ray's object store once by the
    driver: each seed task reads it from there, and a trial's own process never loads it (a
    bare ObjectRef given to ``tune.with_parameters`` would be resolved for the trial)."""

    ref: ray.ObjectRef


def run_repeated_trial(config: dict[str, Any], *, base: dict[str, Any], workdir: str,
                       data: SeedData, repeats: int, hows: Sequence[str],
                       metrics: Sequence[str] = ()) -> None:
    """Train ``base`` with the loss in ``config`` once per seed; report each epoch's aggregate
    of the objectives ``metrics`` (default ``training.select_metric``; ``hows``: each one's
    aggregate) to Ray Tune (see the module docstring)."""
    run_config = run_config_of(RunConfig.from_dict(base), config)
    metrics = list(metrics) or [run_config.training.select_metric]
    out = trial_dir(workdir, config["origin"])
    out.mkdir(parents=True, exist_ok=True)
    folders = {seed: seed_dir(out, seed) for seed in seeds_of(run_config.seed, repeats)}
    record_worker(out, started=time.time())
    take_tune_checkpoint(out, _checkpoints(folders))
    reporter = _Reporter(out, folders, metrics, hows, run_config.training.epochs)
    try:
        _train_seeds(run_config, folders, data.ref, reporter)
    except NonFiniteLossError as error:
        worst = -math.inf if METRIC_DIRECTIONS[reporter.metric] == "maximize" else math.inf
        message = str(getattr(error, "cause", error)).splitlines()[0]
        tune.report({FAILED: f"NonFiniteLossError: {message}", "epoch": reporter.done + 1,
                     OBJECTIVE: worst})
        return
    except Exception as error:  # Ray records the traceback; the study keeps one line of it
        cause = getattr(error, "cause", None) or error  # a seed task's own exception
        write_text(out / ERROR_FILE, f"{type(cause).__name__}: {cause}".splitlines()[0])
        raise
    reporter.report(final=True)


def _train_seeds(run_config: RunConfig, folders: dict[int, Path], data: ray.ObjectRef,
                 reporter: _Reporter) -> None:
    """Run the seeds' tasks, as many at once as the placement group has bundles, reporting
    epochs as they complete; cancel the tasks still running if this ends early (Tune stopped
    the trial, or a seed raised)."""
    group = ray.util.get_current_placement_group()  # `trial_resources`' (its seed bundles)
    free = list(range(group.bundle_count))
    pending, running = list(folders), {}
    try:
        while pending or running:
            while pending and free:
                seed, slot = pending.pop(0), free.pop(0)
                bundle = group.bundle_specs[slot]
                task = train_seed.options(
                    num_cpus=bundle.get("CPU", 0.0), num_gpus=bundle.get("GPU", 0.0),
                    scheduling_strategy=PlacementGroupSchedulingStrategy(group, slot))
                seed_config = {**run_config.to_dict(), "seed": seed}
                running[task.remote(seed_config, str(folders[seed]), data)] = slot
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                free.append(running.pop(ref))
                ray.get(ref)  # a seed's exception ends the trial
            reporter.report(final=False)
    finally:
        for ref in running:
            ray.cancel(ref, force=True)


def _checkpoints(folders: dict[int, Path]) -> list[str]:
    """The seeds' checkpoints, as paths below the trial folder."""
    return [f"{folder.name}/{CHECKPOINT}" for folder in folders.values()]


class _Reporter:
    """Reports to Tune the epochs every seed has finished, once each, and keeps them as the
    trial folder's history.json."""

    def __init__(self, out: Path, folders: dict[int, Path], metrics: Sequence[str],
                 hows: Sequence[str], epochs: int) -> None:
        self.out, self.folders, self.epochs = out, folders, epochs
        self.metrics, self.hows = list(metrics), list(hows)
        self.metric = self.metrics[0]  # the one that keeps each seed's epoch
        # epochs an earlier attempt reported (the driver backfills any it did not hear of):
        # the rows it wrote, each with the Tune checkpoint the seeds restart from
        self.done = len(epoch_history(out))
        self.reported = False

    def _rows(self) -> tuple[list[dict[str, float]], int]:
        """The aggregate rows of the epochs every seed has finished, and how many there are."""
        histories = {seed: epoch_history(folder) for seed, folder in self.folders.items()}
        ready = min(len(h) for h in histories.values())
        return [aggregate_epoch(histories, e, self.metrics, self.hows)
                for e in range(1, ready + 1)], ready

    def report(self, final: bool) -> None:
        """Report the new epochs (the last one only when ``final``: every seed task has ended),
        each with the seeds' checkpoints; when ``final`` and nothing new, the last again (a
        restart after the last epoch)."""
        rows, ready = self._rows()
        limit = ready if final else min(ready, self.epochs - 1)
        if limit > self.done or (final and not self.reported):
            write_text(self.out / "history.json", json.dumps(rows, indent=1))
        for epoch in range(self.done + 1, limit + 1):
            if epoch == self.epochs:  # schedulers stop a trial at its last report
                write_trial_plots(self.out, self.metric)
            self.reported = True
            self.done = epoch
            tune.report(rows[epoch - 1], checkpoint=tune.Checkpoint.from_directory(
                link_checkpoints(self.out, _checkpoints(self.folders))))
        if final and not self.reported and rows:
            write_trial_plots(self.out, self.metric)
            tune.report(rows[-1])
