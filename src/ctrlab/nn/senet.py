"""SENET field re-weighting (FiBiNET, Huang et al. 2019: the "SENET Layer")."""

from __future__ import annotations

import torch
from torch import nn


class SENET(nn.Module):
    """Squeeze-and-excitation over fields, [B, F, D] -> [B, F, D]:

        z_i = mean_d e_{i,d}                       squeeze (mean pooling)
        A = ReLU(W_2 ReLU(W_1 z))                   excitation, W_1 in R^{F/r x F}, W_2 in R^{F x F/r}
        v_i = a_i · e_i                             re-weight

    ``reduction_ratio`` r sets the bottleneck to max(1, F // r).
    """

    def __init__(self, num_fields: int, reduction_ratio: int) -> None:
        super().__init__()
        hidden = max(1, num_fields // reduction_ratio)
        self.excitation = nn.Sequential(
            nn.Linear(num_fields, hidden, bias=False),  # W_1
            nn.ReLU(),
            nn.Linear(hidden, num_fields, bias=False),  # W_2
            nn.ReLU(),
        )

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        a = self.excitation(e.mean(dim=-1))  # [B, F]
        return e * a.unsqueeze(-1)  # [B, F, D]
