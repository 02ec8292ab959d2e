"""The top trials' comparison (search.significance): resampling units, seeds, sentences."""

from __future__ import annotations

import numpy as np
import pytest

from musicdet.metrics import auc
from search.significance import BLOCK_FRAMES, Comparison, TrialScores, compare, resampling_units


def scores_of(labels: np.ndarray, files: int, *seeds: np.ndarray) -> TrialScores:
    groups = np.arange(len(labels)) * files // len(labels)
    return TrialScores(labels, np.ones(len(labels), bool), groups,
                       [f"f{i}" for i in range(files)], list(seeds))


def test_few_files_are_resampled_in_blocks_within_files() -> None:
    labels = np.zeros(2 * 2500)
    units, unit = resampling_units(scores_of(labels, 2, labels))
    assert unit == "6 blocks of 1000 frames in 2 validation files (fewer than 10 files)"
    assert np.array_equal(np.unique(units[:2500], return_counts=True)[1],
                          [BLOCK_FRAMES, BLOCK_FRAMES, 500])  # a block never spans two files
    assert not set(units[:2500]) & set(units[2500:])
    many = scores_of(labels[:1000], 10, labels[:1000])
    assert resampling_units(many)[1] == "10 validation files"


def test_seeds_are_compared_by_their_mean_auc() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.4).astype(float)
    seeds = [labels + rng.normal(0, s, 4000) for s in (0.5, 0.7)]
    other = labels + rng.normal(0, 1.5, 4000)
    found = compare([4, 9], {4: scores_of(labels, 20, *seeds),
                             9: scores_of(labels, 20, other)}, n=200)
    [comparison] = found.comparisons
    expected = np.mean([auc(labels, s) for s in seeds]) - auc(labels, other)
    assert comparison.difference == pytest.approx(expected, abs=1e-12)
    assert comparison.sentence(0.95).startswith("trial 4 is better than 9 at 95 % (ΔAUC ")
    assert found.to_dict()["sentences"] == [comparison.sentence(0.95)]


@pytest.mark.parametrize(("low", "high", "sentence"), [
    (-0.01, 0.02, "trials 3 and 7 are not distinguishable at 95 % (ΔAUC 0.004 [-0.010, 0.020])"),
    (0.001, 0.02, "trial 3 is better than 7 at 95 % (ΔAUC 0.004 [0.001, 0.020])"),
    (-0.02, -0.001, "trial 7 is better than 3 at 95 % (ΔAUC 0.004 [-0.020, -0.001])"),
])
def test_the_sentence_follows_the_interval(low: float, high: float, sentence: str) -> None:
    assert Comparison(3, 7, 0.004, low, high).sentence(0.95) == sentence
