"""Fi-GNN (Li et al. 2019, "Fi-GNN: Modeling Feature Interactions via Graph Neural Networks for CTR
Prediction"): the fields are the nodes of a fully connected feature graph whose node states interact."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FieldGraph(nn.Module):
    """Fi-GNN's graph over the F field nodes, [B, F, D] -> [B, F, D]. With node states h^0 = the embeddings:

        A_ij = softmax_{j != i}(LeakyReLU(w^T [h^0_i ; h^0_j])),  A_ii = 0          attentional edge weights
        a^t_i = W_in^i sum_j A_ij W_out^j h^{t-1}_j + b_p                           edge-wise aggregation
        h^t_i = GRU(a^t_i, h^{t-1}_i) (+ h^0_i with ``residual``)                    state update

    for t = 1..``num_steps``. Each node has its own output / input matrices W_out^j, W_in^i (D x D), shared
    across steps, as in the authors' code; the GRU cell is shared by all nodes.
    """

    def __init__(self, num_fields: int, dim: int, num_steps: int, residual: bool) -> None:
        super().__init__()
        self.num_steps, self.residual = num_steps, residual
        self.attention = nn.Linear(2 * dim, 1, bias=False)  # w, applied to [h_i ; h_j]
        self.w_out = nn.Parameter(torch.randn(num_fields, dim, dim) * dim**-0.5)  # W_out^j: [F, D, D]
        self.w_in = nn.Parameter(torch.randn(num_fields, dim, dim) * dim**-0.5)  # W_in^i: [F, D, D]
        self.bias = nn.Parameter(torch.zeros(dim))  # b_p
        self.gru = nn.GRUCell(dim, dim)
        self.register_buffer("self_loops", torch.eye(num_fields, dtype=torch.bool), persistent=False)

    def adjacency(self, h0: torch.Tensor) -> torch.Tensor:
        """A [B, F, F]: w^T [h_i ; h_j] = w_1^T h_i + w_2^T h_j, so no pair tensor is built."""
        w_src, w_dst = self.attention.weight.squeeze(0).chunk(2)  # [D], [D]
        scores = F.leaky_relu((h0 @ w_src).unsqueeze(2) + (h0 @ w_dst).unsqueeze(1))  # [B, F, F]
        return torch.softmax(scores.masked_fill(self.self_loops, float("-inf")), dim=-1)

    def step(self, adjacency: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One propagation step h^{t-1} -> h^t (before the residual). [B, F, D] -> [B, F, D]."""
        messages = torch.einsum("jed,bjd->bje", self.w_out, h)  # W_out^j h_j: [B, F, D]
        a = torch.einsum("ied,bid->bie", self.w_in, adjacency @ messages) + self.bias  # a_i: [B, F, D]
        return self.gru(a.flatten(0, 1), h.flatten(0, 1)).view_as(h)

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        adjacency = self.adjacency(h0)  # [B, F, F]
        h = h0
        for _ in range(self.num_steps):
            h = self.step(adjacency, h)
            if self.residual:
                h = h + h0
        return h


class AttentionalScoring(nn.Module):
    """Fi-GNN's attentional scoring layer: each node scores itself and weighs its own score,

        ŷ_i = w_s^T h_i,   a_i = sigmoid(w_a^T h_i),   logit = sum_i a_i ŷ_i + b,

    with one-layer MLP_1 / MLP_2 and the sigmoid on the weight as in the authors' code; ``b`` is a global bias
    so the logit can sit at the click rate. [B, F, D] -> [B].
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)  # MLP_1
        self.weight = nn.Linear(dim, 1, bias=False)  # MLP_2
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        score = self.score(h).squeeze(-1)  # ŷ_i: [B, F]
        weight = torch.sigmoid(self.weight(h)).squeeze(-1)  # a_i: [B, F]
        return (weight * score).sum(dim=1) + self.bias  # [B]
