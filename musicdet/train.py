"""Training, per the paper: 300-frame sequences at random, Adam, lr 1e-3 → 1e-4 exponentially.

``train(config, out_dir)`` reads top to bottom: prepare data, fit the feature normalisation,
then one loop over epochs (random minibatches, validation on every validation frame,
checkpoint, best model file, ``on_epoch`` callback). A checkpoint is written after every
epoch and every epoch reseeds its random streams from (seed, epoch), so a resumed run is
bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .config import RunConfig, TrainingConfig
from .configtools import ConfigError
from .examples import load_examples
from .features import Normalizer
from .fsutil import atomic_path, write_text
from .losses import Loss, build_loss
from .metrics import evaluate
from .model import BiGRUDetector
from .modelfile import load_problem, save_model
from .sequences import (
    Example,
    frame_logits,
    n_batches,
    random_batches,
    sequences_per_epoch,
    sequential_batches,
    sigmoid,
    split_by_file,
)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"


class NonFiniteLossError(RuntimeError):
    """The loss or a gradient became NaN/inf; the message names epoch and step."""


@dataclass
class EpochReport:
    """What one epoch gives the ``on_epoch`` callback (metrics at P = 0.90 may be None)."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_auc: float
    val_eer: float
    val_recall: float | None
    val_f1: float | None
    val_precision: float | None
    val_threshold: float | None
    lr: float
    degenerate_batches: int
    seconds: float
    best_epoch: int
    best_val_auc: float
    checkpoint: Path

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics (None dropped), for reporting and logging."""
        skip = {"checkpoint"}
        return {k: float(v) for k, v in asdict(self).items() if k not in skip and v is not None}


@dataclass
class PreparedData:
    """Raw features of the training and validation files (split by file)."""

    train: list[Example]
    validation: list[Example]


@dataclass
class TrainResult:
    model_path: Path
    best: EpochReport
    history: list[EpochReport]
    validation_path: Path


def prepare_data(config: RunConfig, progress: bool = True) -> PreparedData:
    """Labelled files → cached features → the by-file validation split of ``config``."""
    examples = load_examples(config.data, config.features, progress)
    train, validation = split_by_file(examples, config.data.validation_fraction, config.seed)
    return PreparedData(train, validation)


def learning_rate(epoch: int, training: TrainingConfig) -> float:
    """Exponential decay: lr_start at epoch 1, lr_end at the last epoch."""
    if training.epochs == 1:
        return training.lr_start
    fraction = (epoch - 1) / (training.epochs - 1)
    return training.lr_start * (training.lr_end / training.lr_start) ** fraction


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    data: PreparedData | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train the detector of ``config`` into ``out_dir`` (checkpoint.pt, model.pt, history)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.yaml")
    device = _device(config.training.device)
    torch.manual_seed(config.seed)
    model = BiGRUDetector(config.model).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.training.lr_start)
    history: list[EpochReport] = []
    if resume and (out / CHECKPOINT).exists():  # before the data: a bad checkpoint fails fast
        history = _restore(out / CHECKPOINT, model, optimiser, config)
    data = data or prepare_data(config, progress)
    normalizer = Normalizer.fit((e.features for e in data.train), config.features)
    train_set = _normalised(data.train, normalizer)
    val_set = _normalised(data.validation, normalizer)
    loss_fn = build_loss(config.loss)
    n_sequences = config.training.sequences_per_epoch or sequences_per_epoch(
        train_set, config.training.sequence_frames
    )
    epochs = range(len(history) + 1, config.training.epochs + 1)
    for epoch in tqdm(epochs, desc="epochs", unit="epoch", disable=not progress):
        started = time.perf_counter()
        lr = learning_rate(epoch, config.training)
        for group in optimiser.param_groups:
            group["lr"] = lr
        degenerate_before = loss_fn.degenerate_batches
        train_loss = _train_epoch(
            model, optimiser, loss_fn, train_set, n_sequences, config, epoch, device, progress
        )
        val = _validate(model, loss_fn, val_set, config, device)
        best = max(history, key=lambda r: r.val_auc, default=None)
        is_best = best is None or val["auc"] > best.val_auc
        report = EpochReport(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val["loss"],
            val_auc=val["auc"],
            val_eer=val["eer"],
            val_recall=val["recall"],
            val_f1=val["f1"],
            val_precision=val["precision"],
            val_threshold=val["threshold"],
            lr=lr,
            degenerate_batches=loss_fn.degenerate_batches - degenerate_before,
            seconds=time.perf_counter() - started,
            best_epoch=epoch if is_best else best.epoch,
            best_val_auc=val["auc"] if is_best else best.val_auc,
            checkpoint=out / CHECKPOINT,
        )
        history.append(report)
        if is_best:
            save_model(out / MODEL, model, config, normalizer, report.metrics())
            _save_validation(out / "validation.npz", val)
        _save_checkpoint(out / CHECKPOINT, model, optimiser, history, config)
        write_text(out / "history.json", json.dumps([r.metrics() for r in history], indent=1))
        if on_epoch is not None:
            on_epoch(report)
    best = max(history, key=lambda r: r.val_auc)
    return TrainResult(out / MODEL, best, history, out / "validation.npz")


def _train_epoch(
    model: BiGRUDetector,
    optimiser: torch.optim.Optimizer,
    loss_fn: Loss,
    train_set: Sequence[Example],
    n_sequences: int,
    config: RunConfig,
    epoch: int,
    device: torch.device,
    progress: bool,
) -> float:
    """One pass of random minibatches; returns the mean training loss."""
    model.train()
    torch.manual_seed(config.seed * 100_003 + epoch)
    rng = np.random.default_rng([config.seed, epoch])
    batches = random_batches(
        train_set, n_sequences, config.training.batch_size, config.training.sequence_frames, rng
    )
    total = 0.0
    steps = n_batches(n_sequences, config.training.batch_size)
    for step, batch in enumerate(
        tqdm(batches, total=steps, desc=f"epoch {epoch}", unit="batch", leave=False,
             disable=not progress),
        start=1,
    ):
        batch = batch.to(device)
        loss = loss_fn(model(batch.features), batch.labels, batch.mask)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"epoch {epoch}, step {step}: loss is {loss.item()}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
        if not torch.isfinite(grad_norm):
            raise NonFiniteLossError(f"epoch {epoch}, step {step}: gradient norm is {grad_norm}")
        optimiser.step()
        total += loss.item()
    return total / steps


@torch.no_grad()
def _validate(
    model: BiGRUDetector,
    loss_fn: Loss,
    val_set: Sequence[Example],
    config: RunConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Loss over consecutive windows and the paper's metrics over every validation frame."""
    model.eval()
    window = config.training.sequence_frames
    degenerate = loss_fn.degenerate_batches
    losses = [
        loss_fn(model(b.features.to(device)), b.labels.to(device), b.mask.to(device)).item()
        for b in sequential_batches(val_set, config.training.batch_size, window)
    ]
    loss_fn.degenerate_batches = degenerate  # count training minibatches only
    scores = np.concatenate([sigmoid(frame_logits(model, e.features, window, device))
                             for e in val_set])
    labels = np.concatenate([e.labels for e in val_set])
    mask = np.concatenate([e.mask for e in val_set])
    metrics = evaluate(labels, scores, mask)
    return {**metrics, "loss": float(np.mean(losses)), "scores": scores, "labels": labels,
            "mask": mask}


def _normalised(examples: Sequence[Example], normalizer: Normalizer) -> list[Example]:
    return [Example(e.name, normalizer.apply(e.features), e.labels, e.mask) for e in examples]


def _device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device", "cuda was asked for but no GPU is available; "
                                             "expected auto or cpu on this machine")
    return torch.device(choice)


def _save_checkpoint(
    path: Path,
    model: BiGRUDetector,
    optimiser: torch.optim.Optimizer,
    history: list[EpochReport],
    config: RunConfig,
) -> None:
    state = {
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "history": json.dumps([{**asdict(r), "checkpoint": str(r.checkpoint)} for r in history]),
        "config": config.to_yaml(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _restore(
    path: Path, model: BiGRUDetector, optimiser: torch.optim.Optimizer, config: RunConfig
) -> list[EpochReport]:
    """Load a checkpoint of this same config; returns the epochs it already holds."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for foreign files
        raise ValueError(f"{path}: not a readable checkpoint ({load_problem(error)}); delete it "
                         "or train without resume") from None
    if not isinstance(state, dict) or state.get("config") != config.to_yaml():
        raise ValueError(
            f"{path}: checkpoint of a different config; use another output folder "
            "or train without resume"
        )
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    return [
        EpochReport(**{**r, "checkpoint": Path(r["checkpoint"])})
        for r in json.loads(state["history"])
    ]


def _save_validation(path: Path, val: dict[str, Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, labels=val["labels"], scores=val["scores"], mask=val["mask"])
