"""Embedding lookups over the shared id space (DESIGN §3): one table, per-field offsets."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap


class FeatureEmbedding(nn.Module):
    """Maps a batch's local ids [B, F] to field embeddings [B, F, D].

    Numeric fields scale their single embedding row by the field's value (OptInter's recipe); the batch
    then carries ``values`` [B, F] (1.0 for categorical fields). Rows start at N(0, init_std^2).
    """

    def __init__(self, feature_map: FeatureMap, dim: int, init_std: float) -> None:
        super().__init__()
        self.table = nn.Embedding(feature_map.total_vocab, dim)
        nn.init.normal_(self.table.weight, std=init_std)
        self.register_buffer("offsets", torch.as_tensor(feature_map.offsets), persistent=False)  # [F]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.table(batch["ids"] + self.offsets)  # [B, F, D]
        if "values" in batch:
            emb = emb * batch["values"].unsqueeze(-1)
        return emb


class LinearTerm(nn.Module):
    """The first-order part of LR / FM / Wide&Deep: ``b + sum_f w[x_f] * value_f``. Returns [B]."""

    def __init__(self, feature_map: FeatureMap) -> None:
        super().__init__()
        self.weights = FeatureEmbedding(feature_map, dim=1, init_std=0.0)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.weights(batch).sum(dim=(1, 2)) + self.bias  # [B]
