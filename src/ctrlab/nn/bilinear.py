"""Bilinear feature interaction (FiBiNET, Huang et al. 2019: the "Bilinear-Interaction Layer")."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ctrlab.nn.pairs import pair_indices

BilinearType = Literal["field_all", "field_each", "field_interaction"]


class BilinearInteraction(nn.Module):
    """``p_ij = (v_i · W) ⊙ v_j`` for every field pair i < j (as ``pair_indices``). [B, F, D] -> [B, P, D]

    The type decides how many W in R^{D x D} there are:
    ``field_all`` one W for all pairs; ``field_each`` one W_i per field (the pair's first field);
    ``field_interaction`` one W_ij per pair.
    """

    def __init__(self, num_fields: int, dim: int, kind: BilinearType) -> None:
        super().__init__()
        rows, cols = pair_indices(num_fields)
        count = {"field_all": 1, "field_each": num_fields, "field_interaction": len(rows)}
        if kind not in count:
            raise ValueError(f"bilinear type must be one of {sorted(count)}; got {kind!r}")
        self.per_pair = kind == "field_interaction"
        self.weight = nn.Parameter(torch.randn(count[kind], dim, dim) * dim**-0.5)
        self.register_buffer("rows", rows, persistent=False)  # [P]
        self.register_buffer("cols", cols, persistent=False)  # [P]

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # field_all / field_each: v_i · W is the same for every pair that starts at field i, so it is computed
        # once per field (F products, not P) and then picked per pair
        left = v.index_select(1, self.rows) if self.per_pair else v  # [B, P or F, D]
        # one batched matmul over the pairs (fields); a single W broadcasts: [P or F, B, D] @ [P or F or 1, D, D]
        vw = torch.matmul(left.transpose(0, 1), self.weight).transpose(0, 1)  # v_i · W: [B, P or F, D]
        if not self.per_pair:
            vw = vw.index_select(1, self.rows)  # [B, P, D]
        return vw * v.index_select(1, self.cols)  # (v_i · W) ⊙ v_j: [B, P, D]
