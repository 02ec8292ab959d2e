"""The paper's detector: 2 stacked bidirectional GRU-128 layers, then one logit per frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .configtools import require


@dataclass
class ModelConfig:
    """BiGRU size; defaults are the paper's (140-dim input, 2 × BiGRU-128)."""

    input_dim: int = 140
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.0  # between GRU layers

    def __post_init__(self) -> None:
        require(self.input_dim > 0, "input_dim", "input_dim > 0", self.input_dim)
        require(self.hidden_size > 0, "hidden_size", "hidden_size > 0", self.hidden_size)
        require(self.num_layers >= 1, "num_layers", "num_layers >= 1", self.num_layers)
        require(0.0 <= self.dropout < 1.0, "dropout", "0 <= dropout < 1", self.dropout)


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

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(features)
        return self.head(hidden).squeeze(-1)
