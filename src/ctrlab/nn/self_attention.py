"""AutoInt's interacting layer: multi-head self-attention over fields (Song et al. 2019)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AttentionVariant = Literal["paper", "authors_code"]
ATTENTION_VARIANTS = ("paper", "authors_code")


class InteractingLayer(nn.Module):
    """One interacting layer over field vectors ``e_1..e_M`` [B, M, d] (AutoInt's "Interacting Layer").
    ``variant="paper"`` is the layer of AutoInt's equations; for each head h:

        alpha^(h)_{m,k} = softmax_k(<W_Q^(h) e_m, W_K^(h) e_k>)    attention (unscaled inner product)
        ẽ^(h)_m = sum_k alpha^(h)_{m,k} W_V^(h) e_k                 weighted values
        ẽ_m = ẽ^(1)_m ⊕ ... ⊕ ẽ^(H)_m                               heads concatenated
        e^Res_m = ReLU(ẽ_m + W_Res e_m)                              residual (W_Res only if ``residual``)

    ``variant="authors_code"`` is the layer of AutoInt's released code, which produced its paper's tables:
    every projection has a bias and a ReLU (q_m = ReLU(W_Q e_m + b_Q), likewise k, v and the residual
    branch), the scores are scaled by 1/sqrt(d'), and the output is layer-normalised,
    e^Res_m = LayerNorm(ReLU(ẽ_m + ReLU(W_Res e_m + b_Res))) (learned scale and shift, eps 1e-8).

    Each head projects to ``attention_dim`` (d'); the output is [B, M, H * d'].
    """

    def __init__(
        self, in_dim: int, attention_dim: int, num_heads: int, residual: bool, variant: AttentionVariant
    ) -> None:
        super().__init__()
        if variant not in ATTENTION_VARIANTS:
            raise ValueError(f"model.attention_variant = {variant!r} is not one of {list(ATTENTION_VARIANTS)}")
        code = variant == "authors_code"
        out_dim = attention_dim * num_heads
        self.num_heads, self.attention_dim, self.out_dim = num_heads, attention_dim, out_dim
        self.query = nn.Linear(in_dim, out_dim, bias=code)  # W_Q for all heads, stacked
        self.key = nn.Linear(in_dim, out_dim, bias=code)  # W_K
        self.value = nn.Linear(in_dim, out_dim, bias=code)  # W_V
        self.residual = nn.Linear(in_dim, out_dim, bias=code) if residual else None  # W_Res
        self.projection_activation = nn.ReLU() if code else nn.Identity()
        self.scale = attention_dim**-0.5 if code else 1.0
        self.norm = nn.LayerNorm(out_dim, eps=1e-8) if code else nn.Identity()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, m, _ = x.shape
        return x.view(b, m, self.num_heads, self.attention_dim).transpose(1, 2)  # [B, H, M, d']

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        act = self.projection_activation
        q, k, v = (self._heads(act(proj(e))) for proj in (self.query, self.key, self.value))  # [B, H, M, d'] each
        # sum_k softmax_k(scale <q_m, k_k>) v_k in one fused kernel, which never stores alpha [B, H, M, M]
        attended = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # [B, H, M, d']
        out = attended.transpose(1, 2).flatten(2)  # heads concatenated: [B, M, H*d']
        if self.residual is not None:
            out = out + act(self.residual(e))
        return self.norm(torch.relu(out))
