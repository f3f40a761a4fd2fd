"""Field-weighted FM interaction (Pan et al. 2018, "Field-weighted Factorization Machines for Click-Through
Rate Prediction in Display Advertising", WWW 2018; the FwFM equation of §3)."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.product import pairwise_inner_products


class FieldWeightedInteraction(nn.Module):
    """``sum_{i<j} r_{F(i),F(j)} <v_i, v_j>``: FM's pairwise term with one learned weight per field pair.

    With one feature per field, r is a vector over the P = F(F-1)/2 field pairs. r starts at 1, so training
    starts from FM (a zero start would give the embeddings no gradient). [B, F, D] -> [B].
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        self.field_pair_weights = nn.Parameter(torch.ones(num_fields * (num_fields - 1) // 2))  # r [P]

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return pairwise_inner_products(emb) @ self.field_pair_weights  # [B, P] @ [P] -> [B]
