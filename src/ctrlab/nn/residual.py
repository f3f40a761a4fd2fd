"""Deep Crossing's residual unit (Shan et al. 2016, eq. 1)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualUnit(nn.Module):
    """``X^O = X^I + ReLU(W_1 ReLU(W_0 X^I + b_0) + b_1)`` (Deep Crossing eq. 1: the input is added back
    after two layers of ReLU transformations). ``W_0`` maps ``dim -> hidden``, ``W_1`` maps back.
    [B, d] -> [B, d]"""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.inner = nn.Linear(dim, hidden)  # W_0, b_0
        self.outer = nn.Linear(hidden, dim)  # W_1, b_1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.outer(torch.relu(self.inner(x))))  # [B, d]
