"""Losses against plain float64 formulations of the paper's equations (no sklearn)."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import pytest
import torch

from musicdet import losses
from musicdet.configtools import ConfigError
from musicdet.losses import (
    LossConfig,
    auc_loss,
    auc_sum_loss,
    build_loss,
    cross_entropy_loss,
    pairwise_sigmoid_sum,
    pauc_loss,
)

# ---------------------------------------------------------------- float64 references


def reference_band(negatives: list[float], alpha: float, beta: float) -> list[int]:
    """Indices of the negatives ranked ⌈αN⌉+1 … ⌊βN⌋ after a stable descending sort."""
    n = len(negatives)
    n_alpha = math.ceil(Fraction(str(alpha)) * n) + 1
    n_beta = math.floor(Fraction(str(beta)) * n)
    ranked = sorted(range(n), key=lambda j: -negatives[j])
    return ranked[n_alpha - 1 : n_beta]


def reference_pauc_term(
    scores: torch.Tensor, labels: torch.Tensor, alpha: float, beta: float, delta: float
) -> torch.Tensor:
    """1 − A(α, β) (paper eq. 6) written plainly; 0 for an empty band."""
    positives = scores[labels == 1]
    negatives = scores[labels == 0]
    band = reference_band(negatives.tolist(), alpha, beta)
    if not band:
        return scores.sum() * 0
    kept = negatives[torch.tensor(band, dtype=torch.long)]
    area = torch.sigmoid(delta * (positives[:, None] - kept[None, :])).mean()
    return 1 - area


def reference_loss(config: LossConfig, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if config.type == "aauc":
        return reference_pauc_term(scores, labels, 0.0, 1.0, config.delta)
    if config.type == "apauc":
        return reference_pauc_term(scores, labels, config.alpha, config.beta, config.delta)
    first = reference_pauc_term(scores, labels, 0.0, config.gamma, config.delta)
    second = reference_pauc_term(scores, labels, config.gamma, 1.0, config.delta)
    return first + config.lam * second


def value_and_grad(
    function: Callable[[torch.Tensor], torch.Tensor], scores: torch.Tensor
) -> tuple[float, torch.Tensor]:
    scores = scores.detach().clone().requires_grad_()
    value = function(scores)
    value.backward()
    return value.item(), scores.grad


def assert_matches_reference(
    config: LossConfig, scores: torch.Tensor, labels: torch.Tensor
) -> None:
    """float32 loss vs float64 reference: value within 1e-5 relative, gradient normwise."""
    loss = build_loss(config)
    value, grad = value_and_grad(lambda s: loss(s, labels), scores.float())
    ref_value, ref_grad = value_and_grad(
        lambda s: reference_loss(config, s, labels), scores.double()
    )
    assert value == pytest.approx(ref_value, rel=1e-5, abs=1e-7)
    scale = ref_grad.abs().max().item()
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-5 * scale + 1e-12)


def make_batch(
    n_pos: int, n_neg: int, seed: int = 0, spread: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffled 0/1 labels and float64 scores, positives shifted up by 0.3."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)])
    labels = labels[torch.randperm(n_pos + n_neg, generator=generator)]
    scores = torch.randn(n_pos + n_neg, generator=generator, dtype=torch.float64) * spread
    return scores + 0.3 * labels, labels


CONFIGS = [
    LossConfig("aauc"),
    LossConfig("apauc", alpha=0.0, beta=0.25),
    LossConfig("apauc", alpha=0.25, beta=0.75),
    LossConfig("apauc", alpha=0.5, beta=1.0),
    LossConfig("apauc", alpha=0.1, beta=0.9, delta=3.0),
    LossConfig("aaucsum", gamma=0.75, lam=1e-3),
    LossConfig("aaucsum", gamma=0.3, lam=1.0),
]


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
@pytest.mark.parametrize(
    ("n_pos", "n_neg", "spread"),
    [(1, 1, 1.0), (2, 3, 1.0), (37, 53, 1.0), (300, 200, 0.3), (40, 60, 50.0)],
    ids=["one-pair", "tiny", "random", "dense", "extreme"],
)
@pytest.mark.parametrize("chunk_elements", [losses.CHUNK_ELEMENTS, 64], ids=["one-chunk", "chunks"])
def test_matches_float64_reference(config, n_pos, n_neg, spread, chunk_elements, monkeypatch):
    # small chunks of sorted positives take the separable path, wide ones the direct sigmoid
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", chunk_elements)
    scores, labels = make_batch(n_pos, n_neg, spread=spread)
    if spread == 50.0:
        scores = scores.clamp(-50, 50)
    assert_matches_reference(config, scores, labels)


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_ties_and_equal_scores(config):
    scores, labels = make_batch(60, 80, seed=1)
    assert_matches_reference(config, (scores * 2).round() / 2, labels)  # many ties
    assert_matches_reference(config, torch.full_like(scores, 0.7), labels)  # all equal


def test_saturated_pairs_are_finite_in_float32():
    scores = torch.tensor([50.0, -50.0, 50.0, -50.0], requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss = auc_loss(scores, labels, delta=1000.0)
    loss.backward()
    assert loss.item() == 0.5  # pairs: one right (0), two ties (½ each), one wrong (1)
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize(
    ("n_neg", "alpha", "beta", "expected"),
    [(4, 0.0, 1.0, (0, 4)), (4, 0.25, 0.5, (1, 2)), (30, 0.1, 0.2, (3, 6)),
     (5, 0.5, 0.6, (3, 3)), (1, 0.0, 0.75, (0, 0)), (10, 0.75, 1.0, (8, 10)),
     (10, 0.7, 1.0, (7, 10)), (100, 0.0, 0.29, (0, 29))],  # 0.29 * 100 == 28.999…96
)
def test_negative_band_follows_eqs_4_5(n_neg, alpha, beta, expected):
    assert losses.negative_band(n_neg, alpha, beta) == expected


def test_band_of_one_element_takes_that_negative_only():
    scores = torch.tensor([0.0, 3.0, 2.0, 1.0, -1.0], requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    loss = pauc_loss(scores, labels, alpha=0.25, beta=0.5, delta=1.0)  # rank 2: score 2
    assert loss.item() == pytest.approx(1 - 1 / (1 + math.exp(2.0)), rel=1e-6)
    loss.backward()
    assert (scores.grad[[1, 3, 4]] == 0).all() and scores.grad[2] != 0


def test_chunked_pass_matches_one_chunk(monkeypatch):
    scores, labels = make_batch(97, 41, seed=2)
    whole = value_and_grad(lambda s: auc_sum_loss(s, labels, lam=0.5), scores.float())
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 100)  # 2 rows of positives per chunk
    chunked = value_and_grad(lambda s: auc_sum_loss(s, labels, lam=0.5), scores.float())
    assert chunked[0] == pytest.approx(whole[0], rel=1e-6)
    torch.testing.assert_close(chunked[1], whole[1], rtol=1e-5, atol=1e-9)


def test_gradcheck_float64(monkeypatch):
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 8)
    generator = torch.Generator().manual_seed(3)
    positives = torch.randn(5, dtype=torch.float64, generator=generator, requires_grad=True)
    negatives = torch.randn(7, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, n: pairwise_sigmoid_sum(p, n, 2.5),
                                    (positives, negatives))
    scores, labels = make_batch(6, 9, seed=4)
    scores.requires_grad_()
    assert torch.autograd.gradcheck(lambda s: auc_sum_loss(s, labels, 0.5, 0.3, 2.0), (scores,))
    assert torch.autograd.gradcheck(lambda s: pauc_loss(s, labels, 0.2, 0.8, 2.0), (scores,))


# ---------------------------------------------------------------- degenerate cases


@pytest.mark.parametrize("loss_type", ["aauc", "apauc", "aaucsum"])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_one_class_batch_gives_zero_loss_and_gradient_and_is_counted(loss_type, label):
    loss = build_loss(LossConfig(loss_type, beta=0.5))
    scores = torch.randn(3, 10, requires_grad=True)
    value = loss(scores, torch.full((3, 10), label))
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(scores.grad, torch.zeros(3, 10))
    assert loss.degenerate_batches == 1
    loss(scores, (torch.arange(30) % 2).float().reshape(3, 10))
    assert loss.degenerate_batches == 1


def test_empty_band_gives_zero_term_and_is_counted():
    scores = torch.tensor([0.5, 0.1, -0.2, 0.3], requires_grad=True)
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])  # N⁻ = 2: band (0, 0.25) is empty
    loss = build_loss({"type": "aaucsum", "gamma": 0.25, "lam": 0.5})
    value = loss(scores, labels)
    expected = 0.5 * reference_pauc_term(scores.double(), labels, 0.25, 1.0, 10.0)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.empty_bands == 1 and loss.degenerate_batches == 0
    all_empty = build_loss(LossConfig("apauc", alpha=0.5, beta=0.6))
    value = all_empty(scores, labels)
    value.backward()
    assert value.item() == 0.0 and torch.equal(scores.grad, torch.zeros(4))
    assert all_empty.empty_bands == 1


# ---------------------------------------------------------------- masks, CE, training


@pytest.mark.parametrize("loss_type", ["ce", "aauc", "apauc", "aaucsum"])
def test_masked_frames_get_zero_gradient(loss_type):
    loss = build_loss(LossConfig(loss_type, beta=0.5))
    scores, labels = make_batch(30, 30, seed=5)
    scores, labels = scores.float().reshape(3, 20), labels.reshape(3, 20)
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[:, 15:] = False
    masked = value_and_grad(lambda s: loss(s, labels, mask), scores)
    subset = value_and_grad(lambda s: loss(s[:, :15], labels[:, :15]), scores)
    assert masked[0] == pytest.approx(subset[0], rel=1e-6)
    assert torch.equal(masked[1][:, 15:], torch.zeros(3, 5))
    torch.testing.assert_close(masked[1], subset[1])


def test_cross_entropy_is_mean_log_loss_over_valid_frames():
    scores = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    probabilities = torch.sigmoid(scores[mask])
    kept = labels[mask]
    expected = -(kept * probabilities.log() + (1 - kept) * (1 - probabilities).log()).mean()
    assert cross_entropy_loss(scores, labels, mask).item() == pytest.approx(expected.item())
    loss = build_loss(LossConfig("ce"))
    assert loss(scores, labels, torch.zeros_like(mask)).item() == 0.0
    assert loss.degenerate_batches == 1


@pytest.mark.parametrize("loss_type", ["ce", "aauc", "apauc", "aaucsum"])
def test_optimising_scores_decreases_the_loss(loss_type):
    loss = build_loss(LossConfig(loss_type, alpha=0.1, beta=0.6, delta=2.0))
    scores, labels = make_batch(50, 70, seed=6)
    scores = scores.float().requires_grad_()
    optimiser = torch.optim.Adam([scores], lr=0.1)
    first = loss(scores, labels).item()
    for _ in range(30):
        optimiser.zero_grad()
        loss(scores, labels).backward()
        optimiser.step()
    assert loss(scores, labels).item() < 0.5 * first


def test_bad_inputs_raise_one_clear_error():
    with pytest.raises(ValueError, match="labels: expected the scores' shape"):
        auc_loss(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError, match="labels: expected only 0 and 1"):
        auc_loss(torch.zeros(2), torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="mask: expected"):
        auc_loss(torch.zeros(2), torch.zeros(2), mask=torch.ones(3, dtype=torch.bool))


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("data", "message"),
    [({"type": "apauc", "alpha": 0.5, "beta": 0.5}, "loss.beta: `alpha < beta`"),
     ({"alpha": -0.1}, "loss.alpha: `0 <= alpha <= 1`"),
     ({"beta": 1.5}, "loss.beta: `0 <= beta <= 1`"),
     ({"type": "aaucsum", "gamma": 1.0}, "loss.gamma: `0 < gamma < 1`"),
     ({"lam": -1e-3}, "loss.lam: `0 <= lam < inf`"),
     ({"delta": 0}, "loss.delta: `0 < delta < inf`"),
     ({"type": "auc"}, "loss.type: expected one of ce, aauc, apauc, aaucsum"),
     ({"gama": 0.5}, "loss.gama: unknown key")],
)
def test_config_errors_name_the_broken_rule(data, message):
    with pytest.raises(ConfigError, match=message):
        build_loss(data)


def test_inactive_rules_are_not_enforced_and_active_params():
    assert LossConfig("ce", alpha=0.9, beta=0.1, gamma=1.0).active_params() == {}
    assert LossConfig("aauc").active_params() == {"delta": 10.0}
    assert LossConfig("apauc", beta=0.5).active_params() == {
        "alpha": 0.0, "beta": 0.5, "delta": 10.0}
    assert LossConfig("aaucsum").active_params() == {"gamma": 0.75, "lam": 1e-3, "delta": 10.0}
    with pytest.raises(ConfigError, match="beta: `alpha < beta`"):
        pauc_loss(torch.zeros(2), torch.tensor([0.0, 1.0]), alpha=0.6, beta=0.2)
