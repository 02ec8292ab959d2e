"""The paper's detector: 2 stacked bidirectional GRU-128 layers, then one logit per frame.

Optionally (``input_norm: window``) each input sequence is first standardised per feature
dimension over its own frames, inside ``forward``: training minibatches, validation, evaluate
and detect all score windows of ``training.sequence_frames`` frames through this one function,
so they see exactly the same input, and streaming stays exact (its windows are the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .configtools import require

InputNorm = Literal["none", "window"]
WINDOW_EPS = 1e-3
"""Added to each dimension's standard deviation in window standardisation (feature units)."""


@dataclass
class ModelConfig:
    """BiGRU size; defaults are the paper's (140-dim input, 2 × BiGRU-128).

    ``input_norm``: "window" (the default) standardises each sequence per dimension first
    (`standardise_windows`); "none" feeds the min-max scaled features as they are: the
    paper's front end, and what model files written before the option existed use. Trained
    on the embedded corpus, "window" transferred better to real recordings (bench/transfer.py).
    """

    input_dim: int = 140
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.0  # between GRU layers
    input_norm: InputNorm = "window"

    def __post_init__(self) -> None:
        require(self.input_dim > 0, "input_dim", "input_dim > 0", self.input_dim)
        require(self.hidden_size > 0, "hidden_size", "hidden_size > 0", self.hidden_size)
        require(self.num_layers >= 1, "num_layers", "num_layers >= 1", self.num_layers)
        require(0.0 <= self.dropout < 1.0, "dropout", "0 <= dropout < 1", self.dropout)


def standardise_windows(features: torch.Tensor, lengths: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """(B, T, D) → each sequence's dimensions standardised over its first ``lengths`` frames.

    ``(x - mean) / (std + WINDOW_EPS)`` with the sample standard deviation (``Tensor.std``'s
    default, n - 1); frames from ``lengths[b]`` on are padding: left out of the statistics and
    set to 0. ``lengths`` None: every frame is real.
    """
    frames = features.shape[1]
    if lengths is None:
        lengths = torch.full(features.shape[:1], frames, device=features.device)
    real = (torch.arange(frames, device=features.device) < lengths[:, None]).unsqueeze(-1)
    count = lengths.to(features.dtype)[:, None, None]
    mean = (features * real).sum(1, keepdim=True) / count.clamp(min=1)
    centred = (features - mean) * real
    std = (centred.square().sum(1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
    return centred / (std + WINDOW_EPS)


class BiGRUDetector(nn.Module):
    """Frame scorer: features (B, T, input_dim) → music logits (B, T)."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.gru = nn.GRU(
            input_size=self.config.input_dim,
            hidden_size=self.config.hidden_size,
            num_layers=self.config.num_layers,
            dropout=self.config.dropout if self.config.num_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        self.head = nn.Linear(2 * self.config.hidden_size, 1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Logits (B, T); ``lengths`` (B,): real frames per sequence, the rest zero padding
        (None: all real)."""
        if self.config.input_norm == "window":
            features = standardise_windows(features, lengths)
        hidden, _ = self.gru(features)
        return self.head(hidden).squeeze(-1)
