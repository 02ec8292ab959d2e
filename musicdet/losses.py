"""Training losses: cross entropy and the paper's AUC family (aAUC, apAUC, aAUCsum).

Scores are raw frame logits, labels 0/1 (1 = music), both of any shape; pairs are formed over
all valid frames of the minibatch (``mask`` True = valid). Every AUC-family loss returns
``1 − A`` with ``A`` the paper's eq. 3 / eq. 6, computed as the mean of σ(δ(s⁻ − s⁺)) (the same
number, without cancellation when the model is good).

One kernel serves the whole family: `pairwise_sigmoid_sum` computes Σᵢⱼ σ(δ(nⱼ − pᵢ)) in chunks
of positives, never holding the N⁺×N⁻ matrix (one buffer of `CHUNK_ELEMENTS` floats). The same
pass accumulates σ' row and column sums, so backward is O(N⁺ + N⁻). σ' is taken as σ(1 − σ) of
σ(δ(n − p)): exact where pairs are ordered right (σ small); for pairs misordered by more than
~8/δ it has an absolute error ≤ 6e-8 in float32 (1e-16 in float64). Compiled paths were
measured on the 2-core CPU and not adopted: torch.compile's kernel ran 4× slower (after 17 s
of compiling); a fused C++/OpenMP loop was only 1.45× faster and needs a compiler at install.

Degenerate cases give zero loss with zero gradient (never NaN) and are counted by `Loss`:
a minibatch without positive or without negative frames (``degenerate_batches``), and a term
whose band of negatives is empty for this N⁻ (n_β < n_α, e.g. apAUC(0.5, 0.6) with N⁻ = 5;
``empty_bands``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx, once_differentiable

from .configtools import from_dict, require

LossType = Literal["ce", "aauc", "apauc", "aaucsum"]
LOSS_TYPES: tuple[LossType, ...] = get_args(LossType)
LOSS_PARAMS: dict[LossType, tuple[str, ...]] = {
    "ce": (),
    "aauc": ("delta",),
    "apauc": ("alpha", "beta", "delta"),
    "aaucsum": ("gamma", "lam", "delta"),
}
"""The parameters each loss type uses (the others are inactive), in the order they are sampled."""
AUC_FAMILY: tuple[LossType, ...] = tuple(t for t in LOSS_TYPES if t != "ce")
"""Losses whose values are 1 − (relaxed, partial) AUC; cross entropy is in nats."""
CHUNK_ELEMENTS = 1 << 21  # pair buffer (floats): 8 MiB in float32; 2 threads were 1.4× faster
# here than with 2 MiB chunks (per-op thread start-up amortised), 1 thread unchanged
_RANK_TOLERANCE = 1e-9  # α·N⁻ within this of an integer counts as that integer
_SEPARABLE_SPREAD = 20.0  # max δ·(spread of a chunk's positives) for the separable σ
_EXP_LIMIT = 77.0  # |c − δn| clamp: e^(77 + 10) stays below float32's max (e^88.7)


@dataclass
class LossConfig:
    """Which loss to train with and its parameters (the paper's defaults)."""

    type: LossType = "ce"
    alpha: float = 0.0  # apAUC: lower end of the false-positive-rate band
    beta: float = 1.0  # apAUC: upper end of the band
    gamma: float = 0.75  # aAUCsum: split point between the two bands
    lam: float = 1e-3  # aAUCsum: weight of the easy band [γ, 1]
    delta: float = 10.0  # sigmoid slope

    def __post_init__(self) -> None:
        require(self.type in LOSS_TYPES, "type", f"type in {LOSS_TYPES}", self.type)
        require(0 < self.delta < math.inf, "delta", "0 < delta < inf", self.delta)
        require(0 <= self.lam < math.inf, "lam", "0 <= lam < inf", self.lam)
        for key in ("alpha", "beta", "gamma"):
            value = getattr(self, key)
            require(0 <= value <= 1, key, f"0 <= {key} <= 1", value)
        if self.type == "apauc":
            require(self.alpha < self.beta, "beta", "alpha < beta",
                    {"alpha": self.alpha, "beta": self.beta})
        if self.type == "aaucsum":
            require(0 < self.gamma < 1, "gamma", "0 < gamma < 1", self.gamma)

    def active_params(self) -> dict[str, float]:
        """The parameters this loss type uses (the others are logged as "NA")."""
        return {name: getattr(self, name) for name in LOSS_PARAMS[self.type]}

    def bands(self) -> tuple[tuple[float, float, float], ...]:
        """(α, β, weight) of each apAUC term; the loss is Σ weight · (1 − A(α, β)).

        As in the paper's eqs. 4–7, when γN⁻ is not an integer the negative ranked ⌈γN⁻⌉ is in
        neither aAUCsum band.
        """
        if self.type == "aauc":
            return ((0.0, 1.0, 1.0),)
        if self.type == "apauc":
            return ((self.alpha, self.beta, 1.0),)
        if self.type == "aaucsum":
            return ((0.0, self.gamma, 1.0), (self.gamma, 1.0, self.lam))
        return ()


class LossResult(NamedTuple):
    """A loss value and what had to be zeroed to get it."""

    loss: torch.Tensor  # scalar
    degenerate: bool  # no positive or no negative (CE: no valid) frame
    empty_bands: int  # terms whose band of negatives was empty


class Loss:
    """A configured training loss: ``loss(scores, labels, mask=None)`` → scalar tensor.

    ``degenerate_batches`` counts minibatches that gave zero loss because they had no positive
    or no negative valid frame (CE: no valid frame); ``empty_bands`` counts apAUC terms zeroed
    because their band held no negative.
    """

    def __init__(self, config: LossConfig) -> None:
        self.config = config
        self.degenerate_batches = 0
        self.empty_bands = 0

    def __call__(
        self, scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        result = evaluate_loss(self.config, scores, labels, mask)
        self.degenerate_batches += result.degenerate
        self.empty_bands += result.empty_bands
        return result.loss

    def __repr__(self) -> str:
        return f"Loss({self.config.type}, {self.config.active_params()})"


def build_loss(config: LossConfig | Mapping[str, Any]) -> Loss:
    """The loss a config describes; a plain mapping is validated into a `LossConfig` first."""
    if not isinstance(config, LossConfig):
        config = from_dict(LossConfig, config, "loss")
    return Loss(config)


def cross_entropy_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean binary cross entropy of the logits over the valid frames."""
    return evaluate_loss(LossConfig("ce"), scores, labels, mask).loss


def pauc_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.0,
    beta: float = 1.0,
    delta: float = 10.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 − A, A = paper eq. 6 over the negatives ranked ⌈αN⁻⌉+1 … ⌊βN⁻⌋ (descending)."""
    config = LossConfig("apauc", alpha=alpha, beta=beta, delta=delta)
    return evaluate_loss(config, scores, labels, mask).loss


def auc_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    delta: float = 10.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 − A, A = paper eq. 3 (the sigmoid-relaxed AUC over all pairs)."""
    return evaluate_loss(LossConfig("aauc", delta=delta), scores, labels, mask).loss


def auc_sum_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 0.75,
    lam: float = 1e-3,
    delta: float = 10.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1 − A(0, γ)) + λ·(1 − A(γ, 1)), paper eq. 7 (aAUCsum)."""
    config = LossConfig("aaucsum", gamma=gamma, lam=lam, delta=delta)
    return evaluate_loss(config, scores, labels, mask).loss


def evaluate_loss(
    config: LossConfig,
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> LossResult:
    """The loss ``config`` describes, with what was zeroed (see `LossResult`)."""
    scores, labels = _valid_frames(scores, labels, mask)
    if config.type == "ce":
        if scores.numel() == 0:
            return LossResult(_zero(scores), True, 0)
        loss = F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype))
        return LossResult(loss, False, 0)
    is_positive = labels > 0.5
    positives, negatives = scores[is_positive], scores[~is_positive]
    if positives.numel() == 0 or negatives.numel() == 0:
        return LossResult(_zero(scores), True, 0)
    return _band_sum(positives, negatives, config.bands(), config.delta)


def _band_sum(
    positives: torch.Tensor,
    negatives: torch.Tensor,
    bands: tuple[tuple[float, float, float], ...],
    delta: float,
) -> LossResult:
    """Σ weight · mean σ(δ(s⁻ − s⁺)) over each band of the descending-sorted negatives."""
    n_negatives = negatives.numel()
    slices = [negative_band(n_negatives, alpha, beta) for alpha, beta, _ in bands]
    order = None
    if any(band != (0, n_negatives) for band in slices):
        order = torch.argsort(negatives.detach(), descending=True, stable=True)
    loss, empty = _zero(positives), 0
    for (start, stop), (_, _, weight) in zip(slices, bands, strict=True):
        if stop <= start:
            empty += 1
            continue
        if weight == 0:
            continue
        band = negatives if order is None else negatives[order[start:stop]]
        pair_count = positives.numel() * (stop - start)
        loss = loss + pairwise_sigmoid_sum(positives, band, delta) * (weight / pair_count)
    return LossResult(loss, False, empty)


def negative_band(n_negatives: int, alpha: float, beta: float) -> tuple[int, int]:
    """The slice [start, stop) of the descending-sorted negatives that apAUC(α, β) keeps.

    Ranks n_α = ⌈αN⁻⌉ + 1 … n_β = ⌊βN⁻⌋ (paper eqs. 4–5), so start = n_α − 1, stop = n_β;
    the band is empty when stop <= start. A product α·N⁻ within 1e-9 of an integer counts as
    that integer (α = 0.1, N⁻ = 30 gives n_α = 4, not 5 through float rounding).
    """
    start = math.ceil(alpha * n_negatives - _RANK_TOLERANCE)
    stop = math.floor(beta * n_negatives + _RANK_TOLERANCE)
    return start, stop


def pairwise_sigmoid_sum(
    positives: torch.Tensor, negatives: torch.Tensor, delta: float
) -> torch.Tensor:
    """Σᵢⱼ σ(δ(nⱼ − pᵢ)) over 1-D positives × negatives; differentiable, memory O(N⁺ + N⁻)."""
    return _PairwiseSigmoidSum.apply(positives, negatives, delta)


class _PairwiseSigmoidSum(torch.autograd.Function):
    """Forward computes the sum and both gradient vectors in one chunked pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, positives: torch.Tensor, negatives: torch.Tensor, delta: float
    ) -> torch.Tensor:
        with_grad = any(ctx.needs_input_grad[:2])  # type: ignore[attr-defined]
        total, row_slopes, column_slopes = _pairwise_pass(positives, negatives, delta, with_grad)
        ctx.save_for_backward(row_slopes, column_slopes)
        ctx.delta = delta  # type: ignore[attr-defined]
        return total

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad_total: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        row_slopes, column_slopes = ctx.saved_tensors  # type: ignore[attr-defined]
        scale = grad_total * ctx.delta  # type: ignore[attr-defined]
        return -scale * row_slopes, scale * column_slopes, None


def _pairwise_pass(
    positives: torch.Tensor, negatives: torch.Tensor, delta: float, with_grad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Σ σ, Σⱼ σ' per positive, Σᵢ σ' per negative) of σ(δ(nⱼ − pᵢ)), by chunks of positives."""
    n_pos, n_neg = positives.numel(), negatives.numel()
    scaled_pos, order = torch.sort(positives * delta)  # chunks of close positives
    scaled_neg = negatives * delta
    rows = max(1, min(n_pos, CHUNK_ELEMENTS // max(n_neg, 1)))
    starts = list(range(0, n_pos, rows))
    spreads = (scaled_pos[[min(n_pos, s + rows) - 1 for s in starts]] - scaled_pos[starts]).tolist()
    buffer = positives.new_empty(rows, n_neg)
    column_part, shifted = negatives.new_empty(n_neg), negatives.new_empty(n_neg)
    row_slopes = positives.new_empty(n_pos if with_grad else 0)
    column_slopes = negatives.new_zeros(n_neg if with_grad else 0)
    total = torch.zeros((), dtype=torch.float64, device=positives.device)
    for first, spread in zip(starts, spreads, strict=True):
        last = min(n_pos, first + rows)
        pairs = buffer[: last - first]
        _sigmoid_pairs(scaled_pos[first:last], scaled_neg, spread, pairs, shifted)
        total += pairs.sum()
        if with_grad:
            torch.addcmul(pairs, pairs, pairs, value=-1.0, out=pairs)  # σ' / δ = σ(1 − σ)
            torch.sum(pairs, 1, out=row_slopes[first:last])
            torch.sum(pairs, 0, out=column_part)
            column_slopes += column_part
    if with_grad:
        row_slopes = torch.empty_like(row_slopes).index_copy_(0, order, row_slopes)
    return total.to(positives.dtype), row_slopes, column_slopes


def _sigmoid_pairs(
    scaled_pos: torch.Tensor,
    scaled_neg: torch.Tensor,
    spread: float,
    out: torch.Tensor,
    shifted: torch.Tensor,
) -> None:
    """Write σ(nⱼ − pᵢ) for sorted (already δ-scaled) positives into ``out``.

    When the chunk's positives lie within `_SEPARABLE_SPREAD`, uses the separable form
    1 / (1 + e^(pᵢ−c) · e^(c−nⱼ)), c the chunk's centre: one product and one reciprocal per
    pair instead of a subtraction and a sigmoid (≈2× cheaper). Clamping c − nⱼ to ±77 keeps both
    factors and their product finite in float32; it changes only pairs with σ < 1e-29 or
    1 − σ < 1e-29. Otherwise computes the sigmoid directly.
    """
    if spread > _SEPARABLE_SPREAD:
        torch.sub(scaled_neg.unsqueeze(0), scaled_pos.unsqueeze(1), out=out)
        out.sigmoid_()
        return
    centre = float(scaled_pos[0] + scaled_pos[-1]) / 2
    torch.sub(centre, scaled_neg, out=shifted).clamp_(-_EXP_LIMIT, _EXP_LIMIT).exp_()
    row_factors = (scaled_pos - centre).exp_()
    torch.mul(row_factors.unsqueeze(1), shifted.unsqueeze(0), out=out)
    out.add_(1.0).reciprocal_()


def _valid_frames(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened scores and labels of the valid frames, after checking shapes and labels."""
    if scores.shape != labels.shape:
        raise ValueError(f"labels: expected the scores' shape {tuple(scores.shape)}, "
                         f"got {tuple(labels.shape)}")
    if not scores.is_floating_point():
        raise ValueError(f"scores: expected a floating-point tensor, got {scores.dtype}")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels: expected only 0 and 1 values")
    if mask is not None and mask.shape != scores.shape:
        raise ValueError(f"mask: expected the scores' shape {tuple(scores.shape)}, "
                         f"got {tuple(mask.shape)}")
    scores, labels = scores.reshape(-1), labels.reshape(-1)
    if mask is None:
        return scores, labels
    valid = mask.reshape(-1) != 0
    return scores[valid], labels[valid]


def _zero(scores: torch.Tensor) -> torch.Tensor:
    """A zero scalar attached to the graph of ``scores``: backward gives zero gradients."""
    return scores.reshape(-1)[:0].sum()
