"""Compressed Interaction Network (xDeepFM, Lian et al. 2018), shared by xDeepFM and CIN alone."""

from __future__ import annotations

import torch
from torch import nn


class CIN(nn.Module):
    """Feature maps built vector-wise from the field embeddings ``X^0`` [B, m, D] (xDeepFM eq. 6):

        X^k_{h,*} = sum_{i=1}^{H_{k-1}} sum_{j=1}^{m} W^{k,h}_{ij} (X^{k-1}_{i,*} ∘ X^0_{j,*}),

    then each feature map is sum-pooled over the embedding dimension, ``p^k_h = sum_d X^k_{h,d}`` (eq. 7), and
    the pooled vectors of all layers are concatenated, ``p^+ = [p^1, ..., p^T]``. Returns [B, sum_k H_k].
    ``layer_sizes`` are H_1..H_T; the activation on the feature maps is the identity (the paper's choice).
    """

    def __init__(self, num_fields: int, layer_sizes: list[int]) -> None:
        super().__init__()
        sizes = [num_fields, *layer_sizes]
        # W^k in R^{H_k x H_{k-1} x m}, stored flat as [H_k, H_{k-1} * m]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(h, h_prev * num_fields) * (h_prev * num_fields) ** -0.5)
            for h_prev, h in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.out_dim = sum(layer_sizes)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0  # X^0: [B, m, D]
        pooled = []
        for w in self.weights:
            # Z_{(i,j),*} = X^{k-1}_{i,*} ∘ X^0_{j,*}, every pair (i, j) of the two layers: [B, H_{k-1}*m, D]
            z = (x.unsqueeze(2) * x0.unsqueeze(1)).flatten(1, 2)
            x = w @ z  # X^k: [B, H_k, D]
            pooled.append(x.sum(dim=-1))  # p^k: [B, H_k]
        return torch.cat(pooled, dim=1)  # p^+: [B, sum_k H_k]
