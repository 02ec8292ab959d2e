"""Frame matrices → 300-frame sequences: the validation split, random minibatches, windowed scoring.

Training draws sequences at random positions; scoring (validation, evaluate, detect) covers a
file with windows of the same length, hop ``window // 2``, and blends overlapping windows'
logits with triangular weights so every frame is scored near a window's centre. A frame's
score depends only on the features of the windows that hold it, which is what lets `detect`
stream long files block by block.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .configtools import require


@dataclass
class Example:
    """One labelled file: features (T, D) float32, labels (T,) float32 0/1, mask (T,) bool."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    mask: np.ndarray

    @property
    def frames(self) -> int:
        return len(self.labels)


@dataclass
class Batch:
    """A minibatch of sequences: features (B, T, D), labels (B, T), mask (B, T), and lengths
    (B,): each sequence's real frames, the rest zero padding (the mask leaves padding out too,
    and also unlabelled frames, which are real)."""

    features: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(self.features.to(device), self.labels.to(device), self.mask.to(device),
                     self.lengths.to(device))


def split_by_file(
    examples: Sequence[Example], validation_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Hold out ``validation_fraction`` of the files (at least one, never all), by seed."""
    if len(examples) < 2:
        raise ValueError(f"need at least 2 labelled files to hold some out, got {len(examples)}")
    order = np.random.default_rng(seed).permutation(len(examples))
    n_val = min(max(1, round(validation_fraction * len(examples))), len(examples) - 1)
    held_out = set(order[:n_val].tolist())
    train = [e for i, e in enumerate(examples) if i not in held_out]
    validation = [e for i, e in enumerate(examples) if i in held_out]
    return train, validation


def split_by_name(
    examples: Sequence[Example], held_out: set[str]
) -> tuple[list[Example], list[Example]]:
    """Hold out the files named in ``held_out`` (each side must keep at least one file)."""
    train = [e for e in examples if e.name not in held_out]
    validation = [e for e in examples if e.name in held_out]
    if not train or not validation:
        raise ValueError(f"need at least one training and one held-out file, got {len(train)} "
                         f"and {len(validation)}; make the corpus longer or change "
                         "data.validation_fraction")
    return train, validation


def random_batches(
    examples: Sequence[Example],
    n_sequences: int,
    batch_size: int,
    sequence_frames: int,
    rng: np.random.Generator,
) -> Iterator[Batch]:
    """``n_sequences`` windows at random files (∝ length) and offsets, in minibatches.

    Files shorter than a window are zero-padded with the padding masked out.
    """
    lengths = np.array([e.frames for e in examples], dtype=np.float64)
    weights = lengths / lengths.sum()
    for first in range(0, n_sequences, batch_size):
        size = min(batch_size, n_sequences - first)
        picks = rng.choice(len(examples), size=size, p=weights)
        windows = []
        for i in picks:
            start = rng.integers(0, max(examples[i].frames - sequence_frames, 0) + 1)
            windows.append(_window(examples[i], start, sequence_frames))
        yield _stack(windows)


def sequential_batches(
    examples: Sequence[Example], batch_size: int, sequence_frames: int
) -> Iterator[Batch]:
    """Consecutive non-overlapping windows over every file (the last one padded, masked)."""
    windows = [
        _window(e, start, sequence_frames)
        for e in examples
        for start in range(0, e.frames, sequence_frames)
    ]
    for first in range(0, len(windows), batch_size):
        yield _stack(windows[first : first + batch_size])


def sequences_per_epoch(examples: Sequence[Example], sequence_frames: int) -> int:
    """As many windows as the training frames hold: one pass over the data on average."""
    return max(1, sum(e.frames for e in examples) // sequence_frames)


def window_starts(n_frames: int, window: int, hop: int | None = None) -> list[int]:
    """Window starts covering ``n_frames``: every ``hop`` frames (default ``window // 2``, the
    grid training validates), the last aligned to the end."""
    if n_frames <= window:
        return [0]
    hop = window // 2 if hop is None else hop
    starts = list(range(0, n_frames - window + 1, hop))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


@dataclass(frozen=True)
class ScoringGrid:
    """Where scoring puts its windows: ``window`` frames each, one every ``hop`` frames, the
    last aligned to the file's end (`window_starts`). A frame is scored by window / hop
    windows (the BiGRU's work per frame); `of` gives the grid validation and evaluate use."""

    window: int
    hop: int

    def __post_init__(self) -> None:
        require(self.window >= 1, "window_frames", "window_frames >= 1", self.window)
        require(1 <= self.hop <= self.window, "hop_frames", "1 <= hop_frames <= window_frames",
                (self.hop, self.window))

    @classmethod
    def of(cls, window: int, hop: int | None = None) -> ScoringGrid:
        """``window``-frame windows every ``hop`` frames (default ``window // 2``)."""
        return cls(window, window // 2 if hop is None else hop)


def window_weights(length: int) -> np.ndarray:
    """Triangular blending weights (positive everywhere, largest at the centre)."""
    index = np.arange(length)
    return np.minimum(index + 1, length - index).astype(np.float64)


WindowScorer = Callable[[np.ndarray], np.ndarray]
"""Scores a batch of windows: features (B, L, D) float32 → logits (B, L)."""


def frame_logits(
    model: nn.Module,
    features: np.ndarray,
    window: int,
    device: torch.device | str = "cpu",
    batch_windows: int = 64,
    pool: Executor | None = None,
) -> np.ndarray:
    """Score every frame of one file (T, D) → logits (T,) float64 by blended windows."""
    return blend_windows(torch_scorer(model, device), features, window, batch_windows, pool)


def torch_scorer(model: nn.Module, device: torch.device | str = "cpu") -> WindowScorer:
    """`WindowScorer` of a torch model on ``device``."""
    @torch.no_grad()
    def score(batch: np.ndarray) -> np.ndarray:
        # copied into torch's 64-byte aligned memory, as `_stack` does (same float results)
        return model(torch.tensor(batch, device=device)).double().cpu().numpy()
    return score


def blend_windows(
    score: WindowScorer, features: np.ndarray, window: int, batch_windows: int = 64,
    pool: Executor | None = None, hop: int | None = None,
) -> np.ndarray:
    """Logits (T,) float64 of one file's features (T, D): the `window_starts` windows (every
    ``hop`` frames) scored ``batch_windows`` at a time by ``score``, blended with
    `window_weights` (`WindowBlend`).

    With a ``pool`` (`scoring_pool`) the batches are scored in its threads, several at once
    (torch and onnxruntime run without the GIL); the blend adds them in the same order, so
    the result is the same.
    """
    n_frames = len(features)
    if n_frames == 0:
        return np.zeros(0)
    blend = WindowBlend()
    blend.score(score, np.asarray(features, dtype=np.float32),
                window_starts(n_frames, window, hop), min(window, n_frames), batch_windows, pool)
    return blend.take(n_frames)


class WindowBlend:
    """Window logits blended with `window_weights`, frame by frame, kept from the first frame
    not taken yet: a whole file at once (`blend_windows`) or a stream that takes each frame
    once no later window covers it (`detect.stream_logits`)."""

    def __init__(self) -> None:
        self.start = 0  # the first frame not taken
        self.total = np.zeros(0)  # weighted logit sums from frame ``start`` on
        self.norm = np.zeros(0)  # their weights

    def score(self, score: WindowScorer, features: np.ndarray, starts: Sequence[int],
              length: int, batch_windows: int, pool: Executor | None = None,
              offset: int = 0) -> None:
        """Score the ``length``-frame windows at frames ``starts`` (``features[0]`` is frame
        ``offset``) ``batch_windows`` at a time, in ``pool``'s threads if given, and add
        them in the order of ``starts``."""
        def run(chunk: Sequence[int]) -> np.ndarray:
            batch = np.stack([features[s - offset : s - offset + length] for s in chunk])
            return np.asarray(score(batch), dtype=np.float64)

        if not starts:
            return
        grow = max(starts) + length - self.start - len(self.total)
        if grow > 0:
            self.total = np.concatenate((self.total, np.zeros(grow)))
            self.norm = np.concatenate((self.norm, np.zeros(grow)))
        weights = window_weights(length)
        chunks = [starts[first : first + batch_windows]
                  for first in range(0, len(starts), batch_windows)]
        for chunk, logits in zip(chunks, map(run, chunks) if pool is None else
                                 pool.map(run, chunks), strict=True):
            for start, row in zip(chunk, logits, strict=True):
                self.total[start - self.start : start - self.start + length] += weights * row
                self.norm[start - self.start : start - self.start + length] += weights

    def take(self, stop: int) -> np.ndarray:
        """The blended logits of the frames from ``start`` to ``stop`` (every window that
        covers them added); they are then dropped."""
        count = stop - self.start
        logits = self.total[:count] / self.norm[:count]
        self.total, self.norm, self.start = self.total[count:], self.norm[count:], stop
        return logits


def scoring_threads() -> int:
    """BiGRU batches scored at once while a file streams, each on one thread: one per core
    (the feature worker beside them needs ~7 % of a core). Independent single-threaded
    batches, not one batch on many intra-op threads: those wait for each other at every GRU
    step and spin, which on a busy machine cost 10× (bench/detect.py). On an idle 2-core
    machine (0.5 h file) two batches at once against one: torch 273× against 225× realtime,
    onnxruntime 380× against 253×."""
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def scoring_pool(threads: int | None = None) -> Iterator[Executor]:
    """Threads that score window batches (`blend_windows`), `scoring_threads` by default.

    They flush denormal floats to zero: a BiGRU's states decay into denormals on steady input
    (tones, silence), where each operation on one costs ~100 cycles. The flags are per thread
    (x86 MXCSR), so the caller keeps IEEE subnormals; the scores stay within 1e-4 of the
    caller's own (tests/test_detect.py, tests/test_onnx.py).
    """
    with ThreadPoolExecutor(threads or scoring_threads(), thread_name_prefix="musicdet-score",
                            initializer=flush_denormals) as pool:
        yield pool


def flush_denormals() -> None:
    """Make this thread's float arithmetic flush denormals to zero (see `scoring_pool`)."""
    torch.set_flush_denormal(True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Music probability of float64 logits (saturates only beyond |x| ≈ 37)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def _window(example: Example, start: int, frames: int) -> tuple[np.ndarray, ...]:
    """Features, labels, mask of ``frames`` frames from ``start`` (zero-padded) and the number
    of real ones."""
    stop = min(start + frames, example.frames)
    pad = frames - (stop - start)
    features = example.features[start:stop]
    labels = example.labels[start:stop]
    mask = example.mask[start:stop]
    if pad:
        features = np.pad(features, ((0, pad), (0, 0)))
        labels = np.pad(labels, (0, pad))
        mask = np.pad(mask, (0, pad))
    return features, labels, mask, np.int64(stop - start)


def _stack(windows: list[tuple[np.ndarray, ...]]) -> Batch:
    """Copied into torch's 64-byte aligned memory: MKL's float results depend on alignment, and
    numpy's arrays (sometimes only 16-byte aligned) made runs differ in the last bits."""
    features, labels, mask, lengths = (np.stack(parts) for parts in zip(*windows, strict=True))
    return Batch(
        torch.tensor(features, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.float32),
        torch.tensor(mask, dtype=torch.bool),
        torch.tensor(lengths, dtype=torch.int64),
    )


def n_batches(n_sequences: int, batch_size: int) -> int:
    """Minibatches an epoch of ``n_sequences`` takes."""
    return math.ceil(n_sequences / batch_size)
