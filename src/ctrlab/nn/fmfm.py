"""Field-matrixed FM interaction (Sun et al. 2021, "FM^2: Field-matrixed Factorization Machines for
Recommender Systems", WWW 2021; the FmFM equation of §3)."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.pairs import pair_indices


class FieldMatrixedInteraction(nn.Module):
    """``sum_{i<j} v_i^T M_{F(i),F(j)} v_j``: one D x D matrix per field pair.

    M starts at the identity for every pair, so training starts from FM. [B, F, D] -> [B].
    """

    def __init__(self, num_fields: int, dim: int) -> None:
        super().__init__()
        num_pairs = num_fields * (num_fields - 1) // 2
        self.field_pair_matrices = nn.Parameter(torch.eye(dim).repeat(num_pairs, 1, 1))  # M [P, D, D]

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        rows, cols = pair_indices(emb.shape[1], emb.device)
        by_field = emb.transpose(0, 1)  # [F, B, D]: pair-major layout, so the P products are one bmm
        left = torch.bmm(by_field[rows], self.field_pair_matrices)  # v_i^T M_ij [P, B, D]
        return (left * by_field[cols]).sum(dim=(0, 2))  # [B]
