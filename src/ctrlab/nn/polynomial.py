"""Polynomial Interaction Network (xDeepInt, Yan & Li 2020; DynInt §3.1, eqs. 2-3) and its
subspace-crossing mechanism.

Subspace-crossing (DynInt §3 and Fig. 2b, after xDeepInt). Our reading: the D-dim embedding of every field
is cut into h contiguous chunks of D/h dims, and every (field, chunk) becomes a row of its own, so the
feature map X0 [F, D] becomes X0' [F*h, D/h] and the PIN's mixing matrix W acts on F' = F*h rows
(W ∈ R^{F'×F'}). h = 1 is the vector-wise PIN of eq. 3 (whole embeddings interact); h = D is fully
bit-wise (every embedding coordinate of every field mixes with every other). Chunks are only ever mixed
through W, so chunk s of one field can interact with chunk t of another: this is what "crossing" the
sub-spaces means. The rows are ordered field-major (row f*h + s is chunk s of field f) — a plain reshape;
the order is immaterial, since W is dense and a permutation of rows and columns spans the same models.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def split_subspaces(emb: torch.Tensor, num_subspaces: int) -> torch.Tensor:
    """Subspace-crossing input: [B, F, D] -> [B, F*h, D/h], row f*h + s = dims [s*D/h, (s+1)*D/h) of field f."""
    b, f, d = emb.shape
    if d % num_subspaces:
        raise ValueError(f"embedding_dim {d} is not divisible by num_subspaces {num_subspaces}")
    return emb.reshape(b, f * num_subspaces, d // num_subspaces)


def init_interaction_matrix(weight: torch.Tensor) -> None:
    """Xavier-uniform for a PIN mixing matrix: (W X0) starts on the scale of X0 (not stated in the paper)."""
    nn.init.xavier_uniform_(weight)


class PolynomialInteraction(nn.Module):
    """One PIN layer with residual connection (eq. 3), on the subspace-crossed map:

        X_l = X_{l-1} ∘ (W_{l-1} X_0) + X_{l-1},          W_{l-1} ∈ R^{F'×F'}, F' = F*h.

    Each layer raises the maximal polynomial degree by one (L layers: degree L+1 in X0), and the residual
    keeps all lower degrees. ``gate`` (DynInt-DA, eq. 4) multiplies the interaction term before the residual
    is added: X_l = (X_{l-1} ∘ (W X_0)) ∘ G + X_{l-1}.
    """

    def __init__(self, num_rows: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_rows, num_rows))  # W_{l-1}: [F', F']
        init_interaction_matrix(self.weight)

    def forward(self, x: torch.Tensor, x0: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        mixed = torch.matmul(self.weight, x0)  # [F', F'] @ [B, F', D'] -> [B, F', D']
        inter = x * mixed  # [B, F', D']
        if gate is not None:
            inter = inter * gate  # gate broadcasts: [B, F', 1]
        return inter + x


class PINOutput(nn.Module):
    """Output layer of eq. 2 on a feature map X [B, R, C]: logit = (W_out X + b_out 1^T) 1.

    W_out ∈ R^{1×R} aggregates over the R rows, the product is then summed over the C columns. As printed,
    the bias enters as b_out 1^T before the sum over columns, i.e. it contributes b_out * C. ``PINModel``
    chooses the map: the merged [F, D] one (the paper's W_out ∈ R^{1×F}) or the split [F*h, D/h] one.
    """

    def __init__(self, num_rows: int) -> None:
        super().__init__()
        self.num_rows = num_rows  # R
        bound = 1.0 / math.sqrt(num_rows)  # nn.Linear's default: zero-mean, so no degree is favoured at start
        self.weight = nn.Parameter(torch.empty(num_rows).uniform_(-bound, bound))  # W_out: [R]
        self.bias = nn.Parameter(torch.zeros(()))  # b_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_column = torch.einsum("r,brc->bc", self.weight, x) + self.bias  # [B, C]
        return per_column.sum(dim=1)  # [B]
