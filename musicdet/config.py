"""The run configuration: the YAML `musicdet train --config` reads, `musicdet-search export` writes.

```yaml
seed: 0
data: {format: synth, synth_hours: 0.25, synth_seed: 0}
features: {}            # FeatureConfig defaults: the paper's front end
model: {}               # ModelConfig defaults: 2 × BiGRU-128
loss: {type: aaucsum, gamma: 0.75, lam: 0.001, delta: 10.0}
training: {epochs: 20, batch_size: 32}
augment: {}             # AugmentConfig defaults: none (musicdet/augment.py)
validation:             # optional: select on another labelled set (a DataConfig section)
  {format: generic, path: my-broadcasts}
```

Without ``validation:`` the epochs are validated (val_*, the epoch kept in model.pt, its
threshold, validation.npz) on the held-out split of ``data``. With it, all of that uses the
``validation`` set instead: any format the readers take (for synth, the programmes of that
corpus made from validation material), features through the same cache, normalised with the
statistics of the training files; the held-out split of ``data`` is still scored every epoch,
as train_val_* (train_val_auc, …), so the gap between the two shows. The set must hold
labelled frames of both classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .augment import AugmentConfig
from .configtools import from_dict, load_config, require, to_dict, with_overrides
from .devices import DeviceChoice
from .features import FeatureConfig
from .fsutil import write_text
from .losses import LossConfig
from .model import ModelConfig
from .synth.config import SynthConfig

DATA_FORMATS = ("synth", "generic", "openbmat", "seyerlehner")
SEED_LIMIT = 2**32  # seeds are 0 <= seed < 2**32 (numpy and torch both take them)
LOW_FPR = (0.0, 0.1)
"""The FPR band of ``val_pauc_low_fpr``: the detector's region of few false alarms."""
METRIC_DIRECTIONS: dict[str, Literal["maximize", "minimize"]] = {
    "val_auc": "maximize",
    "val_pauc_low_fpr": "maximize",
    "val_eer": "minimize",
    "val_recall": "maximize",
    "val_f1": "maximize",
    "val_loss": "minimize",
    "train_loss": "minimize",
    "train_val_auc": "maximize",
    "train_val_pauc_low_fpr": "maximize",
    "train_val_eer": "minimize",
    "train_val_recall": "maximize",
    "train_val_f1": "maximize",
    "train_val_loss": "minimize",
}
"""Per-epoch metrics that can select the best epoch (and be a study's objective), each with
the one direction in which it improves. ``val_pauc_low_fpr`` is the raw partial AUC of the
validation frames for FPR in `LOW_FPR` = [0, 0.1] (unscaled, so at most 0.1; see
`musicdet.metrics.partial_auc`). train_val_* (the held-out split of ``data``) exist
only in a run with a ``validation`` set."""
SPLIT_PREFIX = "train_val_"


@dataclass
class DataConfig:
    """Where the labelled audio comes from and how it is split (10 % validation, by file)."""

    format: Literal["synth", "generic", "openbmat", "seyerlehner"] = "synth"
    path: str | None = None  # dataset root; for synth the corpus folder (default under cache_dir)
    synth_hours: float = 0.25  # size of the embedded corpus, hours
    synth_seed: int = 0
    # corpus settings for synth (musicdet.synth.SynthConfig, e.g. {noise_sources: {...}});
    # None: the built-in defaults. Its validation_fraction is data.validation_fraction.
    synth: SynthConfig | None = None
    label_map: dict[str, str] = field(default_factory=dict)  # extra label name → music|no-music
    annotator: int = 1  # OpenBMAT annotator (1-based; the paper uses the first)
    folds: list[int] | None = None  # OpenBMAT folds to use (None: all)
    validation_fraction: float = 0.1
    cache_dir: str = "runs/cache"  # feature cache and default synthetic corpus

    def __post_init__(self) -> None:
        require(self.format == "synth" or self.path is not None, "path",
                "path is given for a non-synth format", self.path)
        require(0 < self.synth_hours < math.inf, "synth_hours", "0 < synth_hours < inf",
                self.synth_hours)
        require(0 <= self.synth_seed < SEED_LIMIT, "synth_seed", "0 <= synth_seed < 2**32",
                self.synth_seed)
        require(0 < self.validation_fraction < 1, "validation_fraction",
                "0 < validation_fraction < 1", self.validation_fraction)
        require(self.annotator >= 1, "annotator", "annotator >= 1", self.annotator)
        for name, target in self.label_map.items():
            require(target in ("music", "no-music"), f"label_map.{name}",
                    "value in {music, no-music}", target)


@dataclass
class TrainingConfig:
    """The paper's schedule: Adam, lr decaying exponentially from lr_start to lr_end."""

    epochs: int = 20
    batch_size: int = 32  # sequences per minibatch
    sequence_frames: int = 300  # frames per training sequence (3 s at the default 10 ms hop)
    sequences_per_epoch: int | None = None  # None: as many as the training frames hold
    lr_start: float = 1e-3
    lr_end: float = 1e-4
    device: DeviceChoice = "auto"
    select_metric: str = "val_auc"  # the epoch kept in model.pt is the best by this metric

    def __post_init__(self) -> None:
        require(self.select_metric in METRIC_DIRECTIONS, "select_metric",
                f"select_metric in {{{', '.join(METRIC_DIRECTIONS)}}}", self.select_metric)
        require(self.epochs >= 1, "epochs", "epochs >= 1", self.epochs)
        require(self.batch_size >= 1, "batch_size", "batch_size >= 1", self.batch_size)
        require(self.sequence_frames >= 10, "sequence_frames", "sequence_frames >= 10",
                self.sequence_frames)
        require(self.sequences_per_epoch is None or self.sequences_per_epoch >= 1,
                "sequences_per_epoch", "sequences_per_epoch >= 1", self.sequences_per_epoch)
        require(0 < self.lr_end <= self.lr_start < math.inf, "lr_end",
                "0 < lr_end <= lr_start < inf", (self.lr_start, self.lr_end))


@dataclass
class RunConfig:
    """Everything one training run needs; the model file stores it."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    validation: DataConfig | None = None  # the set epochs are validated on (None: data's split)

    def __post_init__(self) -> None:
        require(0 <= self.seed < SEED_LIMIT, "seed", "0 <= seed < 2**32", self.seed)
        require(self.validation is not None or not self.training.select_metric.startswith(
            SPLIT_PREFIX), "training.select_metric",
            f"{SPLIT_PREFIX}* metrics only with a validation: section",
            self.training.select_metric)
        require(self.model.input_dim == self.features.dims, "model.input_dim",
                "model.input_dim == features.dims", (self.model.input_dim, self.features.dims))
        self._check_augment()

    def _check_augment(self) -> None:
        """The augment options' rules that involve other sections."""
        augment = self.augment
        require(not augment.changes_level or self.features.mel_scaling == "log",
                "augment.gain_db" if augment.gain_db > 0 else "augment.mix_prob",
                "gain and mixing only with features.mel_scaling log",
                (augment.gain_db, augment.mix_prob, self.features.mel_scaling))
        require(not augment.time_masks or augment.time_mask_frames
                <= self.training.sequence_frames, "augment.time_mask_frames",
                "time_mask_frames <= training.sequence_frames",
                (augment.time_mask_frames, self.training.sequence_frames))
        require(not augment.freq_masks or augment.freq_mask_bins <= self.features.n_mels,
                "augment.freq_mask_bins", "freq_mask_bins <= features.n_mels",
                (augment.freq_mask_bins, self.features.n_mels))

    @classmethod
    def from_dict(cls, data: Any) -> RunConfig:
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; without a validation set the key is left out (so configs, checkpoints
        and model files of runs without one read as they did before the section existed)."""
        data = to_dict(self)
        if data["validation"] is None:
            del data["validation"]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        """Write the config as YAML, atomically."""
        write_text(path, self.to_yaml())


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a run config YAML and apply ``key.sub=value`` overrides (values parsed as YAML)."""
    config = load_config(RunConfig, path)
    return apply_overrides(config, overrides) if overrides else config


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Return ``config`` with each ``dotted.key=value`` override applied and re-validated."""
    return with_overrides(config, overrides)
