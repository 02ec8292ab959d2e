"""Training-time augmentation of feature windows: tempo, mixing, level, SpecAugment masks.

Applied by `musicdet.train` to training minibatches only, after the corpus-fitted min-max
scaling (`Normalizer`) and before the model, with a numpy generator seeded per (seed, epoch),
so a resumed run stays bit-identical. Everything is off by default; then no number is drawn
and the batches are exactly those of a run without the ``augment`` section. In this order:

* stretch (``stretch``): each window played at a tempo factor f log-uniform in
  [1 / (1 + stretch), 1 + stretch]: output frame t is input frame floor(t · f), labels and
  mask with it (frames repeated below 1, dropped above), while that is a real frame: the
  window's length becomes ceil(length / f), at most the window (the rest is padding).
* mix (``mix_prob``, ``mix_level_db``): a window gets another window of the minibatch added
  at a level uniform in [-mix_level_db, 0] dB relative to it. On the Mel block, whose scaled
  value x stands for the natural-log energy ``low + span · x``, the mix is exact in energy:
  ``log(exp(a) + g · exp(b))``, done on scaled values (``low`` cancels). Chroma (each frame's
  pitch-class shares of its energy) becomes the energy-weighted mean of the two, with each
  frame's energy estimated from its Mel bands. Labels are the OR of the two per frame; a
  frame's label is known where both are, or where a known one is music. Where the other
  window is padding it counts as silence (known no-music).
* gain (``gain_db``): each window's Mel block is shifted by a level uniform in ±gain_db dB
  (chroma is level-free: left as is). Under ``model.input_norm: window`` a constant offset per
  dimension is removed again by the window standardisation, so gain changes only what clips.
* masks (``time_masks`` × up to ``time_mask_frames`` frames, all dimensions; ``freq_masks`` ×
  up to ``freq_mask_bins`` Mel bands): masked values are set to the window's mean per
  dimension over its real, not time-masked frames. That keeps each dimension's window mean,
  so under ``input_norm: window`` masked values standardise to 0 (up to float rounding) and
  the other frames keep their centring; 0 (the scaled minimum, i.e. silence) would instead be
  an outlier that moves the window's mean and spread.

Scaled values stay clipped to [0, 1] as `Normalizer.apply` clips them; a Mel value at 0 (at
or below the training minimum, digital silence included) counts as the minimum itself: the
documented approximation of undoing a clipped scaling. Padding frames stay zero, masked out.
Gain and mixing need log-Mel (``features.mel_scaling: log``); stretch and masks work on either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .configtools import require
from .sequences import Batch

NATS_PER_DB = math.log(10.0) / 10.0
"""Natural-log energy of one dB of power."""
MAX_LEVEL_DB = 60.0
"""Largest gain_db and mix_level_db accepted (dB)."""
MAX_STRETCH = 0.5
"""Largest stretch accepted: tempo factors from 1/1.5 to 1.5."""


@dataclass
class AugmentConfig:
    """Training-time augmentation (all off by default); levels in dB, spans in frames/bands."""

    gain_db: float = 0.0  # per-window level offset, uniform in ±gain_db dB on the Mel block
    time_masks: int = 0  # masks per window over all dimensions
    time_mask_frames: int = 30  # each time mask's width: uniform in 0..time_mask_frames
    freq_masks: int = 0  # masks per window over Mel bands
    freq_mask_bins: int = 16  # each frequency mask's width: uniform in 0..freq_mask_bins
    mix_prob: float = 0.0  # chance that a window gets another window of its minibatch added
    mix_level_db: float = 10.0  # the added window's level: uniform in [-mix_level_db, 0] dB
    stretch: float = 0.0  # tempo factor log-uniform in [1 / (1 + stretch), 1 + stretch]

    def __post_init__(self) -> None:
        for name in ("gain_db", "mix_level_db"):
            require(0.0 <= getattr(self, name) <= MAX_LEVEL_DB, name,
                    f"0 <= {name} <= {MAX_LEVEL_DB:g}", getattr(self, name))
        for name in ("time_masks", "freq_masks"):
            require(getattr(self, name) >= 0, name, f"{name} >= 0", getattr(self, name))
        for name in ("time_mask_frames", "freq_mask_bins"):
            require(getattr(self, name) >= 1, name, f"{name} >= 1", getattr(self, name))
        require(0.0 <= self.mix_prob <= 1.0, "mix_prob", "0 <= mix_prob <= 1", self.mix_prob)
        require(0.0 <= self.stretch <= MAX_STRETCH, "stretch", f"0 <= stretch <= {MAX_STRETCH}",
                self.stretch)

    @property
    def active(self) -> bool:
        """Whether any option changes a batch."""
        return (self.changes_level or self.stretch > 0 or self.time_masks > 0
                or self.freq_masks > 0)

    @property
    def mixes(self) -> bool:
        return self.mix_prob > 0

    @property
    def changes_level(self) -> bool:
        """Whether an option needs levels in log energy (gain or mixing)."""
        return self.gain_db > 0 or self.mixes

    def describe(self) -> str:
        """The options that are on, e.g. ``gain ±6 dB, 2 time masks ≤ 30 frames``."""
        parts = []
        if self.stretch > 0:
            parts.append(f"stretch ×1/{1 + self.stretch:g}..{1 + self.stretch:g}")
        if self.mixes:
            parts.append(f"mix p={self.mix_prob:g} at -{self.mix_level_db:g}..0 dB")
        if self.gain_db > 0:
            parts.append(f"gain ±{self.gain_db:g} dB")
        if self.time_masks:
            parts.append(f"{self.time_masks} time masks ≤ {self.time_mask_frames} frames")
        if self.freq_masks:
            parts.append(f"{self.freq_masks} Mel masks ≤ {self.freq_mask_bins} bands")
        return ", ".join(parts) or "none"


class Augmenter:
    """Augments scaled training minibatches (module doc) for one fitted Mel scaling.

    ``mel_span``: the Mel block's training range ``maximum - minimum`` (natural-log energy),
    which turns dB into scaled units.
    """

    def __init__(self, config: AugmentConfig, n_mels: int, mel_span: float) -> None:
        self.config = config
        self.n_mels = n_mels
        self.span = float(mel_span)
        self.scale = 1.0 / self.span if self.span > 0 else 0.0  # as Normalizer scales

    def __call__(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """``batch`` augmented with draws from ``rng`` (a fixed number per option and window)."""
        config, size = self.config, len(batch.lengths)
        if config.stretch > 0:
            bound = math.log1p(config.stretch)
            batch = stretch(batch, np.exp(rng.uniform(-bound, bound, size)))
        if config.mixes:
            chosen = rng.random(size) < config.mix_prob
            partner = (np.arange(size) + rng.integers(1, max(size, 2), size)) % size
            level = rng.uniform(-config.mix_level_db, 0.0, size)
            batch = self.mix(batch, np.flatnonzero(chosen & (size > 1)), partner, level)
        features = batch.features
        if config.gain_db > 0:
            features = self.gain(features, batch.lengths,
                                 rng.uniform(-config.gain_db, config.gain_db, size))
        if config.time_masks or config.freq_masks:
            features = mask(features, batch.lengths,
                            _spans(rng, size, config.time_masks, config.time_mask_frames,
                                   batch.lengths.numpy()),
                            _spans(rng, size, config.freq_masks, config.freq_mask_bins,
                                   np.full(size, self.n_mels)))
        return Batch(features, batch.labels, batch.mask, batch.lengths)

    def gain(self, features: torch.Tensor, lengths: torch.Tensor, gain_db: np.ndarray
             ) -> torch.Tensor:
        """Mel block of each window's real frames shifted by ``gain_db`` (B,) dB, clipped."""
        out = features.clone()
        shift = torch.tensor(gain_db * NATS_PER_DB * self.scale, dtype=out.dtype)
        shift = shift[:, None, None] * real_frames(lengths, out.shape[1])[..., None]  # 0: padding
        out[..., : self.n_mels].add_(shift).clamp_(0.0, 1.0)
        return out

    def mix(self, batch: Batch, chosen: np.ndarray, partner: np.ndarray, level_db: np.ndarray
            ) -> Batch:
        """Windows ``chosen`` with windows ``partner[i]`` added at ``level_db[i]`` dB (module
        doc); ``partner`` and ``level_db`` have one entry per window of ``batch``."""
        if not len(chosen):
            return batch
        index, other = torch.as_tensor(chosen), torch.as_tensor(partner[chosen])
        frames = batch.features.shape[1]
        real_a = real_frames(batch.lengths[index], frames)
        real_b = real_frames(batch.lengths[other], frames)
        mixed = self._mixed_features(batch.features[index], batch.features[other],
                                     torch.tensor(level_db[chosen] * NATS_PER_DB))
        features, labels, known = batch.features.clone(), batch.labels.clone(), batch.mask.clone()
        features[index] = torch.where((real_a & real_b)[..., None], mixed, features[index])
        labels[index], known[index] = _ored_labels(
            batch.labels[index], batch.mask[index], real_a,
            torch.where(real_b, batch.labels[other], 0.0),  # padding: silence, known no-music
            torch.where(real_b, batch.mask[other], True))
        return Batch(features, labels, known, batch.lengths)

    def _mixed_features(self, a: torch.Tensor, b: torch.Tensor, log_gain: torch.Tensor
                        ) -> torch.Tensor:
        """(W, T, D) windows ``b`` added to ``a`` at ``log_gain`` (W,) nats of energy: Mel
        energies summed, chroma averaged by each frame's Mel energy."""
        n_mels, log_gain = self.n_mels, log_gain.to(a.dtype)[:, None, None]
        energy_a, energy_b = self.span * a[..., :n_mels], self.span * b[..., :n_mels]
        mel = a[..., :n_mels] + self.scale * torch.logaddexp(
            torch.zeros(()), energy_b + log_gain - energy_a)
        share_b = torch.sigmoid(torch.logsumexp(energy_b, -1, keepdim=True) + log_gain
                                - torch.logsumexp(energy_a, -1, keepdim=True))
        chroma = a[..., n_mels:] + share_b * (b[..., n_mels:] - a[..., n_mels:])
        return torch.cat([mel.clamp(max=1.0), chroma], -1)


def _ored_labels(labels_a: torch.Tensor, known_a: torch.Tensor, real_a: torch.Tensor,
                 labels_b: torch.Tensor, known_b: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (music if either is) and mask (known where both are, or a known one is music)
    of two windows mixed; window a's padding stays padding."""
    known = ((known_a & known_b) | (known_a & (labels_a == 1))
             | (real_a & known_b & (labels_b == 1)))
    return torch.where(real_a, torch.maximum(labels_a, labels_b), 0.0), known


def stretch(batch: Batch, factor: np.ndarray) -> Batch:
    """Each window played at tempo ``factor[i]``: output frame t is input frame floor(t · f)
    while that is a real frame, padding after it (module doc)."""
    frames = batch.features.shape[1]
    source = np.floor(np.arange(frames)[None] * factor[:, None]).astype(np.int64)
    real = torch.from_numpy(source < batch.lengths.numpy()[:, None])
    index = torch.from_numpy(np.minimum(source, frames - 1))
    rows = torch.arange(len(factor))[:, None]
    return Batch(torch.where(real[..., None], batch.features[rows, index], 0.0),
                 torch.where(real, batch.labels[rows, index], 0.0),
                 real & batch.mask[rows, index], real.sum(1))


def mask(features: torch.Tensor, lengths: torch.Tensor, time_spans: np.ndarray,
         freq_spans: np.ndarray) -> torch.Tensor:
    """Time spans (B, n, 2: start, width) over all dimensions and band spans over the first
    bands set to each window's mean over its real, not time-masked frames (module doc)."""
    frames, dims = features.shape[1:]
    real = real_frames(lengths, frames)
    timed = _covered(time_spans, frames) & real
    kept = (real & ~timed)[..., None]
    kept = torch.where(kept.any(1, keepdim=True), kept, real[..., None])
    mean = (features * kept).sum(1, keepdim=True) / kept.sum(1, keepdim=True).clamp(min=1)
    banded = _covered(freq_spans, dims)[:, None, :] & real[..., None]
    return torch.where(timed[..., None] | banded, mean, features)


def real_frames(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, frames) bool: the frames before each window's length (the rest is padding)."""
    return torch.arange(frames) < lengths[:, None]


def _covered(spans: np.ndarray, size: int) -> torch.Tensor:
    """(B, size) bool: positions inside any of each row's (start, width) spans."""
    position = np.arange(size)[None, None, :]
    start, width = spans[..., :1], spans[..., 1:]
    inside = (position >= start) & (position < start + width)
    return torch.from_numpy(inside.any(1))


def _spans(rng: np.random.Generator, size: int, count: int, widest: int,
           room: np.ndarray) -> np.ndarray:
    """(size, count, 2) spans: width uniform in 0..widest (at most ``room``), start uniform
    where the span fits in ``room`` (B,) positions."""
    width = np.minimum(rng.integers(0, widest + 1, (size, count)), room[:, None])
    start = np.floor(rng.random((size, count)) * (room[:, None] - width + 1)).astype(np.int64)
    return np.stack([start, width], -1)
