"""AFM's attention-based pooling (Xiao et al. 2017, "Attentional Factorization Machines", IJCAI 2017,
§3.1 "Attention-based Pooling Layer")."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.pairs import pairwise_products


class AttentionalPooling(nn.Module):
    """``f_Att = sum_{(i,j)} a_ij (v_i ⊙ v_j)`` with

        a'_ij = h^T ReLU(W (v_i ⊙ v_j) + b),   a_ij = softmax over the pairs of a'_ij.

    W: [attention_dim, D], b: [attention_dim], h: [attention_dim]. Input: the field embeddings [B, F, D]
    (AFM's pair-wise interaction layer, ``pairwise_products``, is applied here); output the pooled vector
    [B, D] (AFM then projects it with p).
    """

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Linear(dim, attention_dim),  # W, b
            nn.ReLU(),
            nn.Linear(attention_dim, 1, bias=False),  # h
        )

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        pairs = pairwise_products(emb)  # v_i ⊙ v_j [B, P, D]
        scores = self.attention(pairs).squeeze(-1)  # a'_ij [B, P]
        weights = torch.softmax(scores, dim=1)  # a_ij [B, P]
        return (weights.unsqueeze(-1) * pairs).sum(dim=1)  # [B, D]
