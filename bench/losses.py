"""Fused AUC-family losses vs naive autograd formulations, and a training step vs cross entropy.

    python bench/losses.py [--threads 1 2] [--sizes 2400 4800 9600] [--batches 32 64]

Prints, for N⁺ = N⁻ = N and each of aAUC, apAUC(0, 0.75) and aAUCsum(0.75, 1e-3),
forward+backward time of the fused loss and of a naive version (the full N⁺×N⁻ matrix through
autograd, negatives sorted and banded by the paper's eqs. 4–5), their ratio, their largest
relative difference (value and gradient), and the peak memory each adds above its inputs
(resident high-water mark, reset through /proc/self/clear_refs); then a BiGRU training step
(forward + loss + backward + Adam) on (B, 300, 140) with aAUCsum(0.75, 1e-3) against the same
step with cross entropy. Each time is the best of at least --repeats calls (and 1 s of calls), the
compared steps taking turns, so a shared machine's load falls on both alike.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from functools import partial

import torch

from musicdet.losses import Loss, auc_loss, auc_sum_loss, build_loss, pauc_loss
from musicdet.model import BiGRUDetector, ModelConfig

DELTA = 10.0
FRAMES = 300
GAMMA, LAM = 0.75, 1e-3

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def naive_auc_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 − eq. 3 through autograd over the full N⁺×N⁻ matrix."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    return torch.sigmoid(DELTA * (negatives[None, :] - positives[:, None])).mean()


def naive_pauc_loss(scores: torch.Tensor, labels: torch.Tensor, alpha: float,
                    beta: float) -> torch.Tensor:
    """1 − eq. 6: the negatives sorted descending, ranks ⌈αN⁻⌉+1 … ⌊βN⁻⌋ (eqs. 4–5) kept,
    then the full N⁺×band matrix through autograd."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    ranked = torch.sort(negatives, descending=True).values
    band = ranked[math.ceil(alpha * ranked.numel()):math.floor(beta * ranked.numel())]
    return torch.sigmoid(DELTA * (band[None, :] - positives[:, None])).mean()


def naive_auc_sum_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 7: (1 − A(0, γ)) + λ·(1 − A(γ, 1)) from two naive apAUC terms."""
    return naive_pauc_loss(scores, labels, 0.0, GAMMA) + \
        LAM * naive_pauc_loss(scores, labels, GAMMA, 1.0)


LOSSES: dict[str, dict[str, LossFn]] = {
    "aAUC": {"fused": partial(auc_loss, delta=DELTA), "naive": naive_auc_loss},
    f"apAUC(0, {GAMMA})": {"fused": partial(pauc_loss, alpha=0.0, beta=GAMMA, delta=DELTA),
                           "naive": partial(naive_pauc_loss, alpha=0.0, beta=GAMMA)},
    f"aAUCsum({GAMMA}, {LAM:g})": {
        "fused": partial(auc_sum_loss, gamma=GAMMA, lam=LAM, delta=DELTA),
        "naive": naive_auc_sum_loss},
}


def make_pairs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """N positives and N negatives, positives shifted up by 0.5."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.ones(n), torch.zeros(n)])
    return torch.randn(2 * n, generator=generator) + 0.5 * labels, labels


def forward_backward(loss: LossFn, scores: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss value and score gradient of one forward+backward pass."""
    scores = scores.detach().requires_grad_()
    value = loss(scores, labels)
    value.backward()
    assert scores.grad is not None
    return value.detach(), scores.grad


def max_relative_difference(kernels: dict[str, LossFn], scores: torch.Tensor,
                            labels: torch.Tensor) -> float:
    """Largest relative difference of the fused loss from the naive one: value and gradient."""
    (fused_value, fused_grad), (naive_value, naive_grad) = (
        forward_backward(kernels[k], scores, labels) for k in ("fused", "naive"))
    return max(((fused_value - naive_value).abs() / naive_value.abs()).item(),
               ((fused_grad - naive_grad).abs().max() / naive_grad.abs().max()).item())


def best_times(
    steps: dict[str, Callable[[], object]], repeats: int, min_seconds: float = 1.0,
    burst: int = 3,
) -> dict[str, float]:
    """Best wall time of one call of each step, seconds. The steps run in turn (after one
    warm-up each), at least ``repeats`` rounds and ``min_seconds``, so load from other
    processes falls on all of them alike. Each turn is a burst of ``burst`` calls, as training
    calls a loss back to back: a step is not timed right after the other one has flushed the
    caches (the naive version streams up to 1 GiB per call)."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    started = time.perf_counter()
    rounds = 0
    while rounds < repeats or time.perf_counter() - started < min_seconds:
        for name, step in steps.items():
            for _ in range(burst):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        rounds += 1
    return {name: min(values) for name, values in times.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])


def extra_peak_mib(step: Callable[[], object]) -> float:
    """Peak resident memory ``step`` adds above what is already resident, MiB (Linux)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset the peak (VmHWM) to the current resident size
    before = _status_kib("VmRSS")
    step()
    return (_status_kib("VmHWM") - before) / 1024


def train_step(model: torch.nn.Module, optimiser: torch.optim.Optimizer, loss: Loss,
               features: torch.Tensor, labels: torch.Tensor) -> None:
    """Forward, loss, backward and one Adam update."""
    optimiser.zero_grad()
    loss(model(features), labels).backward()
    optimiser.step()


def bench_kernels(sizes: list[int], repeats: int) -> None:
    print(f"{'loss':>19} {'N+=N-':>6} {'fused ms':>9} {'naive ms':>9} {'speed-up':>9} "
          f"{'max rel diff':>13} {'fused MiB':>10} {'naive MiB':>10}")
    for name, kernels in LOSSES.items():
        for n in sizes:
            scores, labels = make_pairs(n)
            steps = {k: partial(forward_backward, loss, scores, labels)
                     for k, loss in kernels.items()}
            memory = {k: extra_peak_mib(step) for k, step in steps.items()}
            timing = best_times(steps, repeats)
            diff = max_relative_difference(kernels, scores, labels)
            print(f"{name:>19} {n:>6} {timing['fused'] * 1e3:>9.2f} "
                  f"{timing['naive'] * 1e3:>9.1f} {timing['naive'] / timing['fused']:>8.1f}x "
                  f"{diff:>13.1e} {memory['fused']:>10.1f} {memory['naive']:>10.1f}")


def bench_training_step(batches: list[int], repeats: int) -> None:
    print(f"{'B':>4} {'CE s':>7} {'aAUCsum s':>10} {'ratio':>6}   (BiGRU step, {FRAMES} frames)")
    losses = {"ce": build_loss({"type": "ce"}),
              "aaucsum": build_loss({"type": "aaucsum", "gamma": GAMMA, "lam": LAM})}
    for batch in batches:
        torch.manual_seed(0)
        model = BiGRUDetector(ModelConfig())
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        features = torch.rand(batch, FRAMES, 140)
        labels = (torch.rand(batch, FRAMES) < 0.5).float()
        timing = best_times({name: partial(train_step, model, optimiser, loss, features, labels)
                             for name, loss in losses.items()}, repeats)
        print(f"{batch:>4} {timing['ce']:>7.3f} {timing['aaucsum']:>10.3f} "
              f"{timing['aaucsum'] / timing['ce']:>5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2400, 4800, 9600])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n== torch {torch.__version__}, {threads} thread(s), best of >= {args.repeats}")
        bench_kernels(args.sizes, args.repeats)
        bench_training_step(args.batches, args.repeats)


if __name__ == "__main__":
    main()
