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
        which = {"field_all": torch.zeros_like(rows), "field_each": rows, "field_interaction": torch.arange(len(rows))}
        if kind not in which:
            raise ValueError(f"bilinear type must be one of {sorted(which)}; got {kind!r}")
        count = {"field_all": 1, "field_each": num_fields, "field_interaction": len(rows)}[kind]
        self.weight = nn.Parameter(torch.randn(count, dim, dim) * dim**-0.5)
        self.register_buffer("rows", rows, persistent=False)  # [P]
        self.register_buffer("cols", cols, persistent=False)  # [P]
        self.register_buffer("which", which[kind], persistent=False)  # the W of each pair: [P]

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        v_i, v_j = v.index_select(1, self.rows), v.index_select(1, self.cols)  # [B, P, D] each
        w = self.weight.index_select(0, self.which)  # the W of each pair: [P, D, D]
        return torch.einsum("bpd,pde->bpe", v_i, w) * v_j  # (v_i · W) ⊙ v_j: [B, P, D]
