"""The Ray Tune function: one trial is one `musicdet.train.train` run with the sampled loss.

It reports every epoch (metrics, plus ``objective`` = the best value of the study's first
objective so far) with the epoch's checkpoint, so ASHA can stop it and Ray can restart it where
it was. A multi-objective study also gets ``objective_<metric>`` for each later objective: its
value at the epoch the first objective keeps (the one model.pt holds), so a trial's values
always describe one model.
Its outputs live in ``<workdir>/trials/trial-<origin>``, keyed by the Optuna trial number the
configuration first had, so a trial requeued after its driver died resumes the same folder.
Each attempt also writes there where it runs (``worker.json``: process id, Ray node, GPUs) and,
if training raises, why (``error.txt``: one line), for the driver to record. With
``search.repeats`` > 1 (see `search.repeats`) the seeds train in ``seed-<seed>`` folders below it
and the trial folder's history.json holds their aggregate.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from musicdet.config import METRIC_DIRECTIONS, RunConfig
from musicdet.fsutil import atomic_path, write_text
from musicdet.plots import plot_roc, plot_score_histograms
from musicdet.train import EpochReport, NonFiniteLossError, PreparedData, SharedData, train

from .space import run_config_of
from .spec import TRAINING_SECONDS

OBJECTIVE = "objective"
FAILED = "failed"
NODE_ID = "node_id"
TUNE_CHECKPOINT = "tune-checkpoint"
WORKER_FILE, ERROR_FILE = "worker.json", "error.txt"
CHECKPOINT, MODEL = "checkpoint.pt", "model.pt"
TRIAL_ARTIFACTS = ("roc.png", "scores.png", "config.yaml", "history.json")


def trial_dir(workdir: str | Path, origin: int) -> Path:
    return Path(workdir) / "trials" / f"trial-{origin:04d}"


def objective_keys(metrics: Sequence[str]) -> list[str]:
    """The result keys of a study's objectives: ``objective``, then ``objective_<metric>``."""
    return [OBJECTIVE, *(f"{OBJECTIVE}_{m}" for m in metrics[1:])]


def run_trial(config: dict[str, Any], *, base: dict[str, Any], workdir: str,
              data: PreparedData | SharedData | None = None,
              metrics: Sequence[str] = ()) -> None:
    """Train ``base`` with the loss in ``config``; report each epoch to Ray Tune, with the
    objectives (`objective_keys`) of ``metrics``: the first is ``base``'s
    ``training.select_metric`` (the default when ``metrics`` is empty). Features in a shared
    cache (`SharedData`) are memory-mapped here."""
    if isinstance(data, SharedData):
        data = data.open()
    run_config = run_config_of(RunConfig.from_dict(base), config)
    metric = run_config.training.select_metric
    metrics = list(metrics) or [metric]
    out = trial_dir(workdir, config["origin"])
    out.mkdir(parents=True, exist_ok=True)
    record_worker(out)
    take_tune_checkpoint(out, [CHECKPOINT])
    reported = False

    def on_epoch(report: EpochReport) -> None:
        nonlocal reported
        reported = True
        if report.epoch == run_config.training.epochs:  # schedulers stop a trial at its last report
            write_trial_plots(out, metric)
        tune.report({**report.metrics(), **objective_result(epoch_history(out), metrics)},
                    checkpoint=tune.Checkpoint.from_directory(link_checkpoints(out, [CHECKPOINT])))

    try:
        train(run_config, out, data=data, on_epoch=on_epoch, progress=False)
    except NonFiniteLossError as error:
        worst = -math.inf if METRIC_DIRECTIONS[metric] == "maximize" else math.inf
        tune.report({FAILED: f"NonFiniteLossError: {error}", "epoch": len(epoch_history(out)) + 1,
                     OBJECTIVE: worst})
        return
    except Exception as error:  # Ray records the traceback; the study keeps one line of it
        write_text(out / ERROR_FILE, f"{type(error).__name__}: {error}".splitlines()[0])
        raise
    if not reported:  # resumed from the checkpoint of its last epoch: report that epoch again
        write_trial_plots(out, metric)
        history = epoch_history(out)
        tune.report({**history[-1], **objective_result(history, metrics)})


def failure_reason(out: Path) -> str:
    """Why the trial in ``out`` ended in an error: its own line, else its worker died."""
    path = out / ERROR_FILE
    if path.exists():
        return path.read_text()
    return "its worker process died (killed, or out of memory) and max_failures was reached"


def worker_info(out: Path) -> dict[str, Any]:
    """Where the trial in ``out`` last ran: pid, node_id, node_ip (empty if it never started)."""
    path = out / WORKER_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def record_worker(out: Path, **extra: float) -> None:
    """Write where this attempt runs (``worker.json``: also the GPUs Ray gave it, and
    ``extra``); forget an earlier attempt's error."""
    write_text(out / WORKER_FILE, json.dumps({
        "pid": os.getpid(), NODE_ID: ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(), "gpu_ids": ray.get_gpu_ids(), **extra}))
    (out / ERROR_FILE).unlink(missing_ok=True)


def write_trial_plots(out: Path, metric: str) -> None:
    """ROC curve and score histograms (threshold at P = 0.90) of the best epoch by ``metric``
    (the one model.pt holds), if saved; of the kept seed's model (`kept_folder`) if repeated."""
    out = kept_folder(out)
    best = best_epoch(epoch_history(out), metric)
    if best is None or not (out / "validation.npz").exists():
        return
    with np.load(out / "validation.npz") as saved:
        labels, scores, mask = saved["labels"], saved["scores"], saved["mask"]
    plot_roc(labels, scores, out / "roc.png", mask)
    plot_score_histograms(labels, scores, out / "scores.png", mask,
                          threshold=best.get("val_threshold"))


def best_epoch(history: list[dict[str, float]], metric: str) -> dict[str, float] | None:
    """The epoch train keeps in model.pt for ``training.select_metric = metric``: the first
    with the best value in the metric's direction (None before an epoch reports it)."""
    sign = 1.0 if METRIC_DIRECTIONS[metric] == "maximize" else -1.0
    return max((e for e in history if metric in e), key=lambda e: sign * e[metric], default=None)


def objective(history: list[dict[str, float]], metric: str) -> float:
    """The trial's objective after ``history``: its best ``metric`` (NaN before any epoch)."""
    return objective_values(history, [metric])[0]


def objective_values(history: list[dict[str, float]], metrics: Sequence[str]) -> list[float]:
    """Each of ``metrics`` at the epoch kept by the first (NaN before any epoch):
    ``training_seconds`` is the sum of ``seconds`` over the epochs up to the kept one."""
    best = best_epoch(history, metrics[0])
    if best is None:
        return [math.nan] * len(metrics)
    kept = history[:history.index(best) + 1]
    return [sum(e["seconds"] for e in kept) if m == TRAINING_SECONDS else best[m]
            for m in metrics]


def objective_result(history: list[dict[str, float]], metrics: Sequence[str]) -> dict[str, float]:
    """`objective_values` under their `objective_keys`, for a Ray Tune report."""
    return dict(zip(objective_keys(metrics), objective_values(history, metrics), strict=True))


def epoch_objectives(history: list[dict[str, float]], metric: str) -> dict[int, float]:
    """The objective the trial reported after each epoch of ``history``, by epoch (1, 2, ...;
    a repeated trial's aggregate history holds it as ``objective``); epochs before ``metric``
    had a finite value are left out."""
    values = {int(e["epoch"]): e.get(OBJECTIVE, objective(history[:i + 1], metric))
              for i, e in enumerate(history)}
    return {epoch: value for epoch, value in values.items() if math.isfinite(value)}


def epoch_history(out: Path) -> list[dict[str, float]]:
    """Per-epoch metrics the trial folder holds (train writes history.json every epoch)."""
    path = out / "history.json"
    return json.loads(path.read_text()) if path.exists() else []


def seed_dir(out: Path, seed: int) -> Path:
    """Where seed ``seed`` of a repeated trial trains."""
    return out / f"seed-{seed}"


def seed_folders(out: Path) -> list[Path]:
    """The training folders of the trial in ``out``: its seed folders by seed, else ``out``."""
    return sorted(out.glob("seed-*"), key=seed_number) or [out]


def seed_number(folder: Path) -> int:
    """The seed a ``seed-S`` folder trains."""
    return int(folder.name.removeprefix("seed-"))


def kept_folder(out: Path) -> Path:
    """The folder whose model the trial keeps (MLflow's model, export, register): the lowest
    seed's, base.seed, which the exported config reproduces (``out`` itself if not repeated)."""
    return seed_folders(out)[0]


def artifact_files(out: Path) -> list[tuple[Path, str | None]]:
    """The trial's files for MLflow, with their artifact folder: `TRIAL_ARTIFACTS` (from
    ``out``, else from the kept seed's folder) and, if repeated, each seed's history.json under
    seeds/seed-S/ (the model is logged as a model: `kept_model`)."""
    files = []
    for name in TRIAL_ARTIFACTS:
        path = out / name if (out / name).is_file() else kept_folder(out) / name
        if path.is_file():
            files.append((path, None))
    seeds = [p for p in seed_folders(out) if p != out]
    return files + [(p / "history.json", f"seeds/{p.name}") for p in seeds
                    if (p / "history.json").is_file()]


def kept_model(out: Path) -> Path | None:
    """The model file the trial keeps (`kept_folder`'s), if it has one yet."""
    path = kept_folder(out) / MODEL
    return path if path.is_file() else None


def link_checkpoints(out: Path, names: list[str]) -> str:
    """A folder holding only (hard links to) the checkpoints ``names`` (paths below ``out``),
    for Ray to persist."""
    folder = out / TUNE_CHECKPOINT
    for name in names:
        link = folder / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        os.link(out / name, link)
    return str(folder)


def take_tune_checkpoint(out: Path, names: list[str]) -> None:
    """When Ray restarts this trial, continue from the checkpoints it last persisted."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return
    with checkpoint.as_directory() as folder:
        for name in names:
            if not (Path(folder) / name).is_file():
                continue
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out / name) as tmp:
                shutil.copyfile(Path(folder) / name, tmp)
