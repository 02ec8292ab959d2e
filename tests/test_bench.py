"""The benches' own logic: naive loss references agree with the fused losses; the overhead
bench survives failed and requeued trials and divides by the trials it timed."""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial
from studyutil import bench


@pytest.mark.parametrize("n", [8, 300])
def test_naive_references_agree_with_the_fused_losses(n: int) -> None:
    losses = bench("losses")
    scores, labels = losses.make_pairs(n, seed=1)
    for name, kernels in losses.LOSSES.items():
        assert losses.max_relative_difference(kernels, scores.double(), labels) < 1e-10, name


def test_the_naive_band_keeps_the_papers_ranks() -> None:
    """N⁻ = 8, apAUC(0.25, 0.75): ranks ⌈2⌉+1 … ⌊6⌋ = 3 … 6 of the descending negatives."""
    losses = bench("losses")
    negatives = torch.tensor([8.0, 7, 6, 5, 4, 3, 2, 1], dtype=torch.float64)
    scores = torch.cat([torch.tensor([4.5], dtype=torch.float64), negatives])
    labels = torch.cat([torch.ones(1), torch.zeros(8)])
    expected = torch.sigmoid(losses.DELTA * (torch.tensor([6.0, 5, 4, 3]) - 4.5)).mean()
    assert losses.naive_pauc_loss(scores, labels, 0.25, 0.75).item() == pytest.approx(
        expected.item(), rel=1e-12)


def trial(state: TrialState, seconds: float | None) -> optuna.trial.FrozenTrial:
    start = datetime(2026, 12, 1, 9)
    complete = None if seconds is None else start + timedelta(seconds=seconds)
    made = create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None)
    made.datetime_start, made.datetime_complete = start, complete
    return made


def test_the_overhead_bench_times_only_complete_trials() -> None:
    overhead = bench("search_overhead")
    copy = trial(TrialState.COMPLETE, 0.1)
    copy.user_attrs = {"duplicate_of": 0}
    trials = [trial(TrialState.COMPLETE, 3.0), trial(TrialState.FAIL, None),
              trial(TrialState.COMPLETE, 5.0), trial(TrialState.WAITING, None), copy]
    timed = overhead.timed_trials(trials)
    assert [t.duration.total_seconds() for t in timed] == [3.0, 5.0]
    text = overhead.summary(20.0, len(trials), [3.0, 5.0], [1.0, 3.0])
    assert text.splitlines() == [
        "study wall 20.0 s for 5 trials (incl. Ray start, data, MLflow); 3 left out (not "
        "COMPLETE, or duplicates)",
        "mean trial 4.00 s, mean bare train() 2.00 s over 2 configs, ratio 2.000 "
        "(overhead 2.00 s/trial)"]
    assert overhead.summary(9.0, 1, [], []).endswith("no COMPLETE trial: nothing to compare")
