"""Compressed Interaction Network (xDeepFM, Lian et al. 2018), shared by xDeepFM and CIN alone."""

from __future__ import annotations

import torch
from torch import nn


class CIN(nn.Module):
    """Feature maps built vector-wise from the field embeddings ``X^0`` [B, m, D] (xDeepFM eq. 6):

        X^k_{h,*} = sum_{i=1}^{H_{k-1}} sum_{j=1}^{m} W^{k,h}_{ij} (X^{k-1}_{i,*} ∘ X^0_{j,*}),

    then each feature map is sum-pooled over the embedding dimension, ``p^k_h = sum_d X^k_{h,d}`` (eq. 7), and
    the pooled vectors of all layers are concatenated, ``p^+ = [p^1, ..., p^T]``. Returns [B, out_dim].
    ``layer_sizes`` are H_1..H_T; the activation on the feature maps is the identity (the paper's choice).

    ``split_half=False`` is the paper: every layer's H_k maps go both to the output and to the next layer
    (out_dim = sum_k H_k). ``split_half=True`` is xDeepFM's released code, which produced its paper's tables:
    each layer but the last sends its first H_k/2 maps to the next layer (the next layer's X^{k-1}) and its
    other H_k/2 maps to the output; the last layer sends all H_T to the output
    (out_dim = sum_{k<T} H_k/2 + H_T). Those H_k must then be even.
    """

    def __init__(self, num_fields: int, layer_sizes: list[int], split_half: bool) -> None:
        super().__init__()
        if split_half and any(h % 2 for h in layer_sizes[:-1]):
            raise ValueError(
                f"model.cin_layers = {list(layer_sizes)} must be even but for the last with model.cin_split_half = true"
            )
        self.split_half = split_half
        # H_{k-1} as the next layer sees it: half of each layer's maps but the last with split_half
        fed = [h // 2 if split_half else h for h in layer_sizes[:-1]]
        sizes_in = [num_fields, *fed]
        # W^k in R^{H_k x H_{k-1} x m}, stored flat as [H_k, H_{k-1} * m]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(h, h_prev * num_fields) * (h_prev * num_fields) ** -0.5)
            for h_prev, h in zip(sizes_in, layer_sizes, strict=True)
        )
        self.out_dim = sum(layer_sizes) - sum(fed) if split_half else sum(layer_sizes)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """Maps that only reach the output (the last layer's; with ``split_half`` also the output half of the
        others) are never built: their pooled value is exact from the pooled outer products, since

            p^k_h = sum_d X^k_{h,d} = sum_{i,j} W^{k,h}_{ij} S_{ij},   S_{ij} = sum_d X^{k-1}_{i,d} X^0_{j,d},

        which costs H_k H_{k-1} m per row instead of H_k H_{k-1} m D (D times less; the last layer is a third
        of a 3-layer CIN's work). Maps that feed the next layer are built as in eq. 6, one matmul per layer.
        """
        x = x0  # X^0: [B, m, D]
        pooled = []
        last = len(self.weights) - 1
        for k, w in enumerate(self.weights):
            # how many of this layer's maps the next layer sees: the first H_k/2 with split_half, none in the last
            fed = 0 if k == last else (w.shape[0] // 2 if self.split_half else w.shape[0])
            if fed:
                # Z_{(i,j),*} = X^{k-1}_{i,*} ∘ X^0_{j,*}, every pair (i, j) of the two layers: [B, H_{k-1}*m, D]
                z = (x.unsqueeze(2) * x0.unsqueeze(1)).flatten(1, 2)
                maps = w[:fed] @ z  # eq. 6 for the maps the next layer sees: [B, fed, D]
            if fed < w.shape[0]:  # output-only maps, pooled without being built
                s = (x @ x0.transpose(1, 2)).flatten(1)  # S: [B, H_{k-1}*m]
                pooled.append(s @ w[fed:].t())  # p^k: [B, H_k - fed]
            else:
                pooled.append(maps.sum(dim=-1))  # eq. 7, p^k: [B, H_k]
            if fed:
                x = maps
        return torch.cat(pooled, dim=1)  # p^+: [B, out_dim]
