"""Is the best trial really better than the next ones? ΔAUC with a paired bootstrap interval.

For the top trials of a study (`export.top_trials`, best first), AUC(first) − AUC(other) on
the frames of their validation.npz (the epoch each model.pt keeps) with a 95 % interval from
resampling the validation files with replacement, one resample for both trials
(`musicdet.metrics.paired_bootstrap_diff`). A validation set of fewer than `MIN_FILES` files
is resampled in blocks of `BLOCK_FRAMES` frames within its files instead (the unit is named).
Two trials are compared only when they scored the same frames (same files, labels and mask);
otherwise, e.g. when they were validated on different sets, the line says so.

A trial's scores are a list of arrays, one per training seed (``search.repeats``: the mean AUC
of its seeds is compared).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from musicdet.metrics import MetricsError, paired_bootstrap_diff

from .export import top_trials
from .spec import StudySpec
from .study import trial_origin
from .trainable import seed_folders, trial_dir

MIN_FILES = 10  # fewer validation files: resample blocks of BLOCK_FRAMES within them
BLOCK_FRAMES = 1000  # 10 s at the default 100 frames/s
VALIDATION_FILE = "validation.npz"


@dataclass
class TrialScores:
    """One trial's validation frames: labels, mask, file index per frame, file names and the
    scores of each of its seeds."""

    labels: np.ndarray
    mask: np.ndarray
    groups: np.ndarray
    files: list[str]
    scores: list[np.ndarray]

    def same_frames(self, other: TrialScores) -> bool:
        return self.files == other.files and all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ("labels", "mask", "groups"))


@dataclass
class Comparison:
    """The first trial against ``other``: ΔAUC and its interval, or why there is none."""

    first: int
    other: int
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    problem: str | None = None

    def sentence(self, level: float) -> str:
        """One plain line: better, not distinguishable, or why not compared."""
        if self.problem is not None:
            return f"trials {self.first} and {self.other} not compared: {self.problem}"
        assert self.difference is not None and self.low is not None and self.high is not None
        figures = f"(ΔAUC {self.difference:.3f} [{self.low:.3f}, {self.high:.3f}])"
        percent = f"{level * 100:g} %"
        if self.low > 0:
            return f"trial {self.first} is better than {self.other} at {percent} {figures}"
        if self.high < 0:
            return f"trial {self.other} is better than {self.first} at {percent} {figures}"
        return f"trials {self.first} and {self.other} are not distinguishable at {percent} " \
               f"{figures}"


@dataclass
class Significance:
    """The top trials against the first: what was resampled and each comparison."""

    first: int
    unit: str
    resamples: int
    level: float
    comparisons: list[Comparison] = field(default_factory=list)
    problem: str | None = None  # why the first trial cannot be compared at all

    def format(self) -> str:
        """The table `best` prints and the parent MLflow run stores (significance.txt)."""
        if self.problem is not None:
            return f"no comparison with trial {self.first}: {self.problem}"
        rows = [f"{c.other:>5}  {c.difference:>7.4f}  [{c.low:>7.4f}, {c.high:>7.4f}]"
                for c in self.comparisons if c.problem is None]
        lines = [f"AUC of trial {self.first} minus the others', paired bootstrap "
                 f"over {self.unit} ({self.resamples} resamples):",
                 f"{'trial':>5}  {'ΔAUC':>7}  {f'{self.level * 100:g} % interval':>18}",
                 *rows] if rows else []
        return "\n".join(lines + [c.sentence(self.level) for c in self.comparisons])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sentences": [c.sentence(self.level)
                                              for c in self.comparisons]}

    def texts(self) -> dict[str, str]:
        """The files the parent MLflow run stores: significance.txt (`format`) and .json."""
        return {"significance.txt": self.format() + "\n",
                "significance.json": json.dumps(self.to_dict(), indent=1, ensure_ascii=False)}


def load_scores(folder: Path) -> TrialScores:
    """The validation frames of the trial in ``folder``, with the scores of each of its seeds
    (a repeated trial's ``seed-S`` folders, else the folder's own `VALIDATION_FILE`);
    `MetricsError` if one is missing, unreadable, written before files were recorded, or the
    seeds scored different frames."""
    seeds = [_load_seed(f) for f in seed_folders(folder)]
    first = seeds[0]
    if not all(first.same_frames(other) for other in seeds[1:]):
        raise MetricsError(f"the seeds in {folder} were validated on different frames")
    return replace(first, scores=[s for seed in seeds for s in seed.scores])


def _load_seed(folder: Path) -> TrialScores:
    path = folder / VALIDATION_FILE
    if not path.is_file():
        raise MetricsError(f"no {VALIDATION_FILE} in {folder}")
    try:
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise MetricsError(f"{path} is not readable ({error})") from None
    if "groups" not in arrays:
        raise MetricsError(f"{path} has no file ids (written by an older musicdet)")
    return TrialScores(arrays["labels"], arrays["mask"], arrays["groups"],
                       arrays["files"].tolist(), [arrays["scores"]])


def resampling_units(scores: TrialScores) -> tuple[np.ndarray, str]:
    """Group id per frame and what they are: the files, or blocks within them when there are
    fewer than `MIN_FILES` files."""
    files = len(scores.files)
    if files >= MIN_FILES:
        return scores.groups, f"{files} validation files"
    starts = np.searchsorted(scores.groups, scores.groups)  # frames are grouped by file
    blocks = (np.arange(len(scores.groups)) - starts) // BLOCK_FRAMES
    units = scores.groups * (int(blocks.max()) + 1) + blocks
    return units, (f"{len(np.unique(units))} blocks of {BLOCK_FRAMES} frames in {files} "
                   f"validation file{'s' if files != 1 else ''} (fewer than {MIN_FILES} files)")


def compare(numbers: list[int], scores: dict[int, TrialScores | str], *, n: int = 1000,
            seed: int = 0, level: float = 0.95) -> Significance:
    """Trial ``numbers[0]`` against each other trial of ``numbers``; ``scores`` holds each
    trial's frames, or a line saying why it has none."""
    first, *others = numbers
    reference = scores[first]
    if isinstance(reference, str):
        return Significance(first, "nothing", n, level, problem=reference)
    units, unit = resampling_units(reference)
    result = Significance(first, unit, n, level)
    for other in others:
        result.comparisons.append(_compare(first, other, reference, scores[other], units,
                                           n=n, seed=seed, level=level))
    return result


def _compare(first: int, other: int, reference: TrialScores, candidate: TrialScores | str,
             units: np.ndarray, **options: Any) -> Comparison:
    if isinstance(candidate, str):
        return Comparison(first, other, problem=candidate)
    if not candidate.same_frames(reference):
        return Comparison(first, other, problem="they were validated on different frames "
                                                "(different validation sets?)")
    try:
        found = paired_bootstrap_diff(reference.labels, reference.scores, candidate.scores,
                                      units, reference.mask, **options)
    except MetricsError as error:
        return Comparison(first, other, problem=str(error))
    return Comparison(first, other, found["difference"], found["low"], found["high"])


def compare_top(spec: StudySpec, study: optuna.Study, count: int = 5,
                **options: Any) -> Significance | None:
    """The ``count`` best COMPLETE trials against the best (None with fewer than two)."""
    numbers = [row.number for row in top_trials(spec, study, count)]
    if len(numbers) < 2:
        return None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    scores: dict[int, TrialScores | str] = {}
    for number in numbers:
        try:
            scores[number] = load_scores(trial_dir(spec.workdir, trial_origin(trials[number])))
        except MetricsError as error:
            scores[number] = str(error)
    return compare(numbers, scores, **options)
