"""AutoInt's interacting layer: multi-head self-attention over fields (Song et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn


class InteractingLayer(nn.Module):
    """One interacting layer over field vectors ``e_1..e_M`` [B, M, d] (AutoInt's "Interacting Layer").
    For each head h:

        alpha^(h)_{m,k} = softmax_k(<W_Q^(h) e_m, W_K^(h) e_k>)    attention (unscaled inner product)
        ẽ^(h)_m = sum_k alpha^(h)_{m,k} W_V^(h) e_k                 weighted values
        ẽ_m = ẽ^(1)_m ⊕ ... ⊕ ẽ^(H)_m                               heads concatenated
        e^Res_m = ReLU(ẽ_m + W_Res e_m)                              residual (W_Res only if ``residual``)

    Each head projects to ``attention_dim`` (d'); the output is [B, M, H * d'].
    """

    def __init__(self, in_dim: int, attention_dim: int, num_heads: int, residual: bool) -> None:
        super().__init__()
        out_dim = attention_dim * num_heads
        self.num_heads, self.attention_dim, self.out_dim = num_heads, attention_dim, out_dim
        self.query = nn.Linear(in_dim, out_dim, bias=False)  # W_Q for all heads, stacked
        self.key = nn.Linear(in_dim, out_dim, bias=False)  # W_K
        self.value = nn.Linear(in_dim, out_dim, bias=False)  # W_V
        self.residual = nn.Linear(in_dim, out_dim, bias=False) if residual else None  # W_Res

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, m, _ = x.shape
        return x.view(b, m, self.num_heads, self.attention_dim).transpose(1, 2)  # [B, H, M, d']

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(e)), self._heads(self.key(e)), self._heads(self.value(e))
        alpha = torch.softmax(q @ k.transpose(-1, -2), dim=-1)  # [B, H, M, M]
        out = (alpha @ v).transpose(1, 2).flatten(2)  # heads concatenated: [B, M, H*d']
        if self.residual is not None:
            out = out + self.residual(e)
        return torch.relu(out)
