"""Field-aware FM interaction (Juan et al. 2016, "Field-aware Factorization Machines for CTR Prediction",
RecSys 2016; the FFM equation of §2)."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.pairs import pair_indices


class FieldAwareInteraction(nn.Module):
    """``sum_{i<j} <v_{i,F(j)}, v_{j,F(i)}>``: each feature keeps one latent vector per field it meets.

    Input: the field-aware embeddings as one lookup of width F*D, [B, F, F*D], where the slice
    ``[:, i, f*D:(f+1)*D]`` is v_{i,f}, feature i's vector towards field f (the f = i slice is never used).
    Output [B].
    """

    def __init__(self, num_fields: int, dim: int) -> None:
        super().__init__()
        self.num_fields = num_fields
        self.dim = dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        emb = emb.unflatten(-1, (self.num_fields, self.dim))  # [B, F, F, D]: v_{i,f}
        rows, cols = pair_indices(self.num_fields, emb.device)
        towards_j = emb[:, rows, cols]  # v_{i,F(j)} [B, P, D]
        towards_i = emb[:, cols, rows]  # v_{j,F(i)} [B, P, D]
        return (towards_j * towards_i).sum(dim=(1, 2))  # [B]
