"""Factorization-machine interaction (Rendle 2010), shared by FM, DeepFM and NFM's bi-interaction."""

from __future__ import annotations

import torch
from torch import nn


class FMInteraction(nn.Module):
    """``sum_{i<j} v_i * v_j`` (element-wise), computed in O(F D) by Rendle's identity

        sum_{i<j} v_i ⊙ v_j = 1/2 [ (sum_i v_i)^2 - sum_i v_i^2 ].

    Input [B, F, D] -> [B, D]. Summing the output over D gives FM's 2nd-order term; NFM's
    bi-interaction pooling is the vector itself.
    """

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        square_of_sum = emb.sum(dim=1).pow(2)  # [B, D]
        sum_of_square = emb.pow(2).sum(dim=1)  # [B, D]
        return 0.5 * (square_of_sum - sum_of_square)
