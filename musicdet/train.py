"""Training, per the paper: 300-frame sequences at random, Adam, lr 1e-3 → 1e-4 exponentially.

``train(config, out_dir)`` reads top to bottom: accept or refuse the checkpoint to resume,
prepare data, fit the feature normalisation, then one loop over epochs (random minibatches,
validation on every validation frame, best model file, checkpoint, ``on_epoch`` callback).
Nothing is written to ``out_dir`` before the first epoch ends, so a refused resume or a failed
data preparation leaves the folder as it was. A checkpoint is written after every epoch and
every epoch reseeds its random streams from (seed, epoch), so a resumed run is bit-identical
to an uninterrupted one on CPU. Training minibatches (never validation) go through the
``augment`` options (`musicdet.augment`), drawn from their own (seed, epoch) stream.

The epoch kept in model.pt is the best by ``training.select_metric``, in that metric's
direction (`METRIC_DIRECTIONS`). Its default threshold is chosen on the validation scores
median-filtered as `detect` filters them by default.

With a ``validation:`` section in the config, "validation" above (val_*, the epoch kept, the
threshold, validation.npz) means that set; the held-out split of ``data`` is scored too, as
train_val_*. The normalisation is fitted on the training files only, in both cases.
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

from .augment import Augmenter
from .config import LOW_FPR, METRIC_DIRECTIONS, SPLIT_PREFIX, RunConfig, TrainingConfig
from .detect import Smoothing, median_smooth, seconds_to_frames
from .devices import choose_device
from .examples import corpus_manifest, load_examples, validation_examples
from .features import FeatureConfig, Normalizer, ScaledFeatures
from .fsutil import atomic_path, write_text
from .losses import Loss, build_loss, evaluate_loss
from .metrics import evaluate, operating_point, roc_points
from .model import BiGRUDetector
from .modelfile import OperatingPoint, TrainingData, load_problem, save_model
from .sequences import (
    Example,
    frame_logits,
    n_batches,
    random_batches,
    sequences_per_epoch,
    sequential_batches,
    sigmoid,
    split_by_file,
    split_by_name,
)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
TARGET_PRECISION = 0.90  # the paper's operating point: recall and F1 at this precision
AUGMENT_STREAM = 1  # third seed word of the augmentation draws: (seed, epoch, AUGMENT_STREAM)


class NonFiniteLossError(RuntimeError):
    """The loss or a gradient became NaN/inf; the message names epoch and step."""


@dataclass
class EpochReport:
    """What one epoch gives the ``on_epoch`` callback.

    Losses leave out the minibatches that have no loss to give (`degenerate_batches`: zero
    by construction, they would bias the mean towards 0); train_loss is the mean over the
    epoch's other minibatches, val_loss their mean weighted by valid frames (for CE exactly
    the mean cross entropy per validation frame); NaN if there is none. Recall and F1
    at precision 0.90 are 0.0 when no threshold reaches that precision on the raw validation
    frames (a model that predicts no music there); val_precision and val_threshold are then
    None. best_epoch / best_value: the epoch kept so far by ``training.select_metric`` and its
    value of that metric. train_val_* are the same metrics on the held-out split of ``data``
    in a run with a ``validation:`` set (None without one, where val_* are on that split).
    """

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_auc: float
    val_pauc_low_fpr: float  # raw partial AUC for FPR in LOW_FPR = [0, 0.1], at most 0.1
    val_eer: float
    val_recall: float
    val_f1: float
    val_precision: float | None
    val_threshold: float | None
    lr: float
    degenerate_batches: int  # training minibatches without both classes (CE: no valid frame)
    empty_bands: int  # apAUC terms of training minibatches zeroed for an empty band
    seconds: float
    best_epoch: int
    best_value: float
    checkpoint: Path
    train_val_loss: float | None = None
    train_val_auc: float | None = None
    train_val_pauc_low_fpr: float | None = None
    train_val_eer: float | None = None
    train_val_recall: float | None = None
    train_val_f1: float | None = None

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics (None dropped), for reporting and logging."""
        skip = {"checkpoint"}
        return {k: float(v) for k, v in asdict(self).items() if k not in skip and v is not None}


@dataclass
class PreparedData:
    """Raw features of the training and validation files (split by file), the corpus.json
    of the embedded corpus they come from (None for other data), the files of the config's
    ``validation:`` set (None without one) and, if already fitted on ``train``, the
    normaliser (None: `train` fits it)."""

    train: list[Example]
    validation: list[Example]
    corpus: dict[str, Any] | None = None
    external: list[Example] | None = None
    normalizer: Normalizer | None = None

    @property
    def selection(self) -> list[Example]:
        """The files epochs are validated on: the ``validation:`` set, else the split."""
        return self.validation if self.external is None else self.external

    def amounts(self, frames_per_second: float) -> TrainingData:
        """Files and hours of each split and the corpus's hours, seed and providers (the model
        file records them)."""
        def hours(examples: list[Example]) -> float:
            return sum(e.frames for e in examples) / frames_per_second / 3600

        corpus = {} if self.corpus is None else {
            "corpus_hours": float(self.corpus["hours"]), "corpus_seed": int(self.corpus["seed"]),
            "providers": [f"{s['name']} ({s['version']})" for s in self.corpus["sources"]]}
        return TrainingData(len(self.train), hours(self.train), len(self.validation),
                            hours(self.validation), **corpus)


@dataclass
class MappedExample:
    """An `Example` whose features stay in a feature-cache file (.npy), by path."""

    name: str
    path: str
    labels: np.ndarray
    mask: np.ndarray

    def open(self) -> Example:
        """The example with its features memory-mapped read-only from ``path``."""
        return Example(self.name, np.load(self.path, mmap_mode="r"), self.labels, self.mask)


@dataclass
class SharedData:
    """`PreparedData` whose features stay in a feature cache that every process can read:
    each file's path, labels and mask, and the normaliser fitted once (what travels to a
    trial is about 1 % of the features: 5 bytes of labels and mask per frame against 560)."""

    train: list[MappedExample]
    validation: list[MappedExample]
    normalizer: Normalizer
    corpus: dict[str, Any] | None = None
    external: list[MappedExample] | None = None

    @classmethod
    def of(cls, data: PreparedData, config: FeatureConfig) -> SharedData:
        """``data`` with memory-mapped features (`prepare_data` with ``mmap``) by path."""
        def mapped(examples: list[Example]) -> list[MappedExample]:
            for e in examples:
                if not isinstance(e.features, np.memmap) or e.features.filename is None:
                    raise ValueError(f"{e.name}: features are not memory-mapped from a file")
            return [MappedExample(e.name, str(e.features.filename), e.labels, e.mask)
                    for e in examples]

        normalizer = data.normalizer or Normalizer.fit((e.features for e in data.train), config)
        return cls(mapped(data.train), mapped(data.validation), normalizer, data.corpus,
                   None if data.external is None else mapped(data.external))

    def open(self) -> PreparedData:
        """Every file memory-mapped: the `PreparedData` that `train` takes."""
        return PreparedData([e.open() for e in self.train], [e.open() for e in self.validation],
                            self.corpus, None if self.external is None else
                            [e.open() for e in self.external], self.normalizer)


@dataclass
class Validation:
    """One epoch's validation: loss, the paper's metrics and every file's probabilities."""

    loss: float
    metrics: dict[str, Any]  # `musicdet.metrics.evaluate` of the raw frame probabilities
    # (pauc: over LOW_FPR)
    probabilities: list[np.ndarray]  # per validation file, (T,)
    labels: np.ndarray  # all files concatenated
    mask: np.ndarray
    names: list[str]  # the files, in the order of ``probabilities``

    def scores(self, prefix: str) -> dict[str, float]:
        """Loss, AUC, low-FPR partial AUC, EER, recall and F1 at precision 0.90 (0.0 when
        never reached) named ``PREFIX<metric>``, as `EpochReport` holds them."""
        metrics = self.metrics
        return {f"{prefix}loss": self.loss, f"{prefix}auc": metrics["auc"],
                f"{prefix}pauc_low_fpr": metrics["pauc"], f"{prefix}eer": metrics["eer"],
                f"{prefix}recall": metrics["recall"] or 0.0, f"{prefix}f1": metrics["f1"] or 0.0}


@dataclass
class TrainResult:
    model_path: Path
    best: EpochReport
    history: list[EpochReport]
    validation_path: Path


def prepare_data(config: RunConfig, progress: bool = True, cache_dir: str | Path | None = None,
                 mmap: bool = False) -> PreparedData:
    """Labelled files → cached features → the by-file validation split of ``config``, and
    the files of its ``validation:`` set if it has one.

    The embedded corpus holds out its own validation programmes (made from validation
    material only, so no score is on both sides); other data a seeded share of the files.
    Features come from the cache at ``cache_dir`` (default ``config.data.cache_dir``), as
    read-only memory maps with ``mmap``.
    """
    external = None if config.validation is None else validation_examples(
        config.validation, config.features, progress, cache_dir, mmap)  # a bad set fails fast
    examples = load_examples(config.data, config.features, progress, cache_dir, mmap)
    manifest = corpus_manifest(config.data)
    if manifest is not None:
        train, validation = split_by_name(examples, set(manifest["validation"]))
    else:
        train, validation = split_by_file(examples, config.data.validation_fraction, config.seed)
    return PreparedData(train, validation, manifest, external)


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
    device = choose_device(config.training.device, "training.device")
    torch.manual_seed(config.seed)
    model = BiGRUDetector(config.model).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.training.lr_start)
    history: list[EpochReport] = []
    if resume and (out / CHECKPOINT).exists():  # before the data: a bad checkpoint fails fast
        history = _restore(out / CHECKPOINT, model, optimiser, config)
    data = data or prepare_data(config, progress)
    if (config.validation is None) != (data.external is None):
        raise ValueError("the prepared data and the config disagree on a validation: set; "
                         "prepare the data from this config")
    normalizer = data.normalizer or Normalizer.fit((e.features for e in data.train),
                                                   config.features)
    train_set = _normalised(data.train, normalizer)
    val_set = _normalised(data.selection, normalizer)
    split_set = None if data.external is None else _normalised(data.validation, normalizer)
    loss_fn = build_loss(config.loss)
    augmenter = augmenter_of(config, normalizer)
    n_sequences = config.training.sequences_per_epoch or sequences_per_epoch(
        train_set, config.training.sequence_frames
    )
    frames_per_second = config.features.sample_rate / config.features.hop_length
    epochs = range(len(history) + 1, config.training.epochs + 1)
    for epoch in tqdm(epochs, desc="epochs", unit="epoch", disable=not progress):
        started = time.perf_counter()
        lr = learning_rate(epoch, config.training)
        for group in optimiser.param_groups:
            group["lr"] = lr
        degenerate_before, empty_before = loss_fn.degenerate_batches, loss_fn.empty_bands
        train_loss = _train_epoch(
            model, optimiser, loss_fn, train_set, n_sequences, config, epoch, device, progress,
            augmenter,
        )
        val = _validate(model, val_set, config, device)
        split = {} if split_set is None else _validate(model, split_set, config, device).scores(
            SPLIT_PREFIX)
        report = EpochReport(
            epoch=epoch,
            train_loss=train_loss,
            **val.scores("val_"),
            val_precision=val.metrics["precision"],
            val_threshold=val.metrics["threshold"],
            lr=lr,
            degenerate_batches=loss_fn.degenerate_batches - degenerate_before,
            empty_bands=loss_fn.empty_bands - empty_before,
            seconds=time.perf_counter() - started,
            best_epoch=epoch,
            best_value=math.nan,
            checkpoint=out / CHECKPOINT,
            **split,
        )
        _keep_best(report, history[-1] if history else None, config.training.select_metric)
        history.append(report)
        config.save(out / "config.yaml")  # the first write: the run goes ahead
        if report.best_epoch == epoch:
            save_model(out / MODEL, model, config, normalizer, report.metrics(),
                       operating_point=choose_operating_point(val, frames_per_second),
                       training_data=data.amounts(frames_per_second))
            _save_validation(out / "validation.npz", val)
        _save_checkpoint(out / CHECKPOINT, model, optimiser, history, config)
        write_text(out / "history.json", json.dumps([r.metrics() for r in history], indent=1))
        if on_epoch is not None:
            on_epoch(report)
    best = history[history[-1].best_epoch - 1]
    return TrainResult(out / MODEL, best, history, out / "validation.npz")


def augmenter_of(config: RunConfig, normalizer: Normalizer) -> Augmenter | None:
    """The training batches' `Augmenter` on the scale ``normalizer`` fitted (None: all off)."""
    if not config.augment.active:
        return None
    span = normalizer.maximum[0] - normalizer.minimum[0]  # block 0: the Mel bands
    return Augmenter(config.augment, config.features.n_mels, span)


def _keep_best(report: EpochReport, previous: EpochReport | None, metric: str) -> None:
    """Set ``report.best_epoch`` / ``best_value``: this epoch, or the one kept before it.

    An epoch replaces the kept one only if its ``metric`` is strictly better in the metric's
    direction; a NaN value is never better, and any number is better than a NaN.
    """
    report.best_value = getattr(report, metric)
    if previous is None or math.isnan(previous.best_value):
        return
    sign = 1.0 if METRIC_DIRECTIONS[metric] == "maximize" else -1.0
    if not sign * report.best_value > sign * previous.best_value:  # also when it is NaN
        report.best_epoch, report.best_value = previous.best_epoch, previous.best_value


def choose_operating_point(val: Validation, frames_per_second: float) -> OperatingPoint:
    """The model's default threshold, chosen on what detect thresholds by default.

    Each validation file's probabilities are median-filtered as `detect` does with its default
    `Smoothing` (per file, frames = round(seconds × frames per second)); the threshold is the
    highest-recall one with precision >= 0.90 there, else the equal-error point (first ROC
    point with FPR >= FNR).
    """
    seconds = Smoothing().median_seconds
    frames = seconds_to_frames(seconds, 1 / frames_per_second)  # as detect and evaluate count
    scores = np.concatenate([median_smooth(p, frames) for p in val.probabilities])
    where = f"validation scores median-filtered over {seconds:g} s"
    point = operating_point(val.labels, scores, val.mask, TARGET_PRECISION)
    if point["target_reached"]:
        return OperatingPoint(float(point["threshold"]),
                              f"precision {TARGET_PRECISION:.2f}, highest recall, on {where}",
                              seconds)
    fpr, tpr, thresholds = roc_points(val.labels, scores, val.mask)
    first = int(np.argmax(fpr + tpr >= 1.0))  # FPR >= FNR = 1 - TPR; never the (0, 0) point
    return OperatingPoint(float(thresholds[first]),
                          f"no threshold reached precision {TARGET_PRECISION:.2f} on {where}: "
                          "equal-error point", seconds)


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
    augmenter: Augmenter | None = None,
) -> float:
    """One pass of random minibatches; returns the mean loss of those that define one.

    Augmentation draws from its own stream of (seed, epoch), so it leaves the windows drawn
    as they are without it.
    """
    model.train()
    torch.manual_seed(config.seed * 100_003 + epoch)
    rng = np.random.default_rng([config.seed, epoch])
    augment_rng = np.random.default_rng([config.seed, epoch, AUGMENT_STREAM])
    batches = random_batches(
        train_set, n_sequences, config.training.batch_size, config.training.sequence_frames, rng
    )
    total = 0.0
    steps = n_batches(n_sequences, config.training.batch_size)
    degenerate = loss_fn.degenerate_batches
    for step, batch in enumerate(
        tqdm(batches, total=steps, desc=f"epoch {epoch}", unit="batch", leave=False,
             disable=not progress),
        start=1,
    ):
        if augmenter is not None:
            batch = augmenter(batch, augment_rng)
        batch = batch.to(device)
        loss = loss_fn(model(batch.features, batch.lengths), batch.labels, batch.mask)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"epoch {epoch}, step {step}: loss is {loss.item()}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
        if not torch.isfinite(grad_norm):
            raise NonFiniteLossError(f"epoch {epoch}, step {step}: gradient norm is {grad_norm}")
        optimiser.step()
        total += loss.item()
    informative = steps - (loss_fn.degenerate_batches - degenerate)  # the others gave 0.0
    return total / informative if informative else math.nan


@torch.no_grad()
def _validate(
    model: BiGRUDetector,
    val_set: Sequence[Example],
    config: RunConfig,
    device: torch.device,
) -> Validation:
    """Loss over consecutive windows and the paper's metrics over every validation frame.

    The loss is the frame-weighted mean over the windows' minibatches that define one (see
    `EpochReport`); it leaves the loss's counters of training minibatches alone.
    """
    model.eval()
    window = config.training.sequence_frames
    losses, frames = [], []
    for batch in sequential_batches(val_set, config.training.batch_size, window):
        batch = batch.to(device)
        logits = model(batch.features, batch.lengths)
        result = evaluate_loss(config.loss, logits, batch.labels, batch.mask)
        if not result.degenerate:
            losses.append(result.loss.item())
            frames.append(int(batch.mask.sum()))
    probabilities = [sigmoid(frame_logits(model, e.features, window, device)) for e in val_set]
    labels = np.concatenate([e.labels for e in val_set])
    mask = np.concatenate([e.mask for e in val_set])
    metrics = evaluate(labels, np.concatenate(probabilities), mask, TARGET_PRECISION,
                       fpr_range=LOW_FPR)
    loss = float(np.average(losses, weights=frames)) if losses else math.nan
    return Validation(loss, metrics, probabilities, labels, mask, [e.name for e in val_set])


def _normalised(examples: Sequence[Example], normalizer: Normalizer) -> list[Example]:
    """The examples with features scaled as windows read them (`ScaledFeatures`): memory-mapped
    features stay on disk, in-memory ones are not copied."""
    return [Example(e.name, ScaledFeatures(e.features, normalizer), e.labels, e.mask)  # type: ignore[arg-type]
            for e in examples]


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
    try:
        history = [EpochReport(**{**r, "checkpoint": Path(r["checkpoint"])})
                   for r in json.loads(state["history"])]
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: checkpoint written by another musicdet version (its epoch "
                         f"records do not match: {error}); use another output folder or train "
                         "without resume") from None
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    return history


def _save_validation(path: Path, val: Validation) -> None:
    """validation.npz: per frame labels, scores, mask and groups (the index of its file in
    files, the file names), all files concatenated."""
    groups = np.repeat(np.arange(len(val.names)), [len(p) for p in val.probabilities])
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, labels=val.labels, scores=np.concatenate(val.probabilities),
                 mask=val.mask, groups=groups, files=np.array(val.names))
