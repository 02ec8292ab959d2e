"""Validation split, random minibatches and windowed frame scoring."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from musicdet.sequences import (
    Example,
    frame_logits,
    random_batches,
    sequential_batches,
    split_by_file,
    window_starts,
)


def make_examples(lengths: list[int], dims: int = 3) -> list[Example]:
    rng = np.random.default_rng(0)
    return [
        Example(f"f{i}", rng.random((n, dims), dtype=np.float32),
                (rng.random(n) > 0.5).astype(np.float32), np.ones(n, bool))
        for i, n in enumerate(lengths)
    ]


def test_split_is_by_file_deterministic_and_never_empty() -> None:
    examples = make_examples([50] * 20)
    train, val = split_by_file(examples, 0.1, seed=3)
    assert len(val) == 2 and len(train) == 18
    assert not {e.name for e in train} & {e.name for e in val}
    assert [e.name for e in val] == [e.name for e in split_by_file(examples, 0.1, seed=3)[1]]
    assert [e.name for e in val] != [e.name for e in split_by_file(examples, 0.1, seed=4)[1]]
    assert len(split_by_file(examples[:2], 0.01, seed=0)[1]) == 1


def test_random_batches_shapes_padding_and_masks() -> None:
    examples = make_examples([20, 500])
    rng = np.random.default_rng(1)
    batches = list(random_batches(examples, 10, 4, 100, rng))
    assert [b.features.shape[0] for b in batches] == [4, 4, 2]
    assert all(b.features.shape[1:] == (100, 3) for b in batches)
    masks = torch.cat([b.mask for b in batches])
    # the 20-frame file is padded: its windows have exactly 20 valid frames
    assert set(masks.sum(1).tolist()) <= {20, 100}


def test_sequential_batches_cover_every_frame_once() -> None:
    examples = make_examples([250, 90])
    batches = list(sequential_batches(examples, 2, 100))
    assert sum(int(b.mask.sum()) for b in batches) == 340
    labels = torch.cat([b.labels[b.mask] for b in batches]).numpy()
    assert np.array_equal(labels, np.concatenate([e.labels for e in examples]))


def test_window_starts_cover_the_file() -> None:
    assert window_starts(50, 300) == [0]
    assert window_starts(300, 300) == [0]
    starts = window_starts(1000, 300)
    assert starts[:3] == [0, 150, 300] and starts[-1] == 700
    covered = np.zeros(1000, bool)
    for s in starts:
        covered[s : s + 300] = True
    assert covered.all()


class Causal(nn.Module):
    """A per-frame linear model: windowed scoring must equal scoring frames one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


def test_frame_logits_equal_per_frame_model_for_any_length() -> None:
    model = Causal()
    for n in (7, 300, 301, 1234):
        features = np.random.default_rng(n).random((n, 3), dtype=np.float32)
        expected = model(torch.from_numpy(features)).detach().double().numpy()
        np.testing.assert_allclose(frame_logits(model, features, 300), expected, rtol=1e-5,
                                   atol=1e-6)
