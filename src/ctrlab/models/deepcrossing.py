"""Deep Crossing (Shan et al. 2016): stacked residual units over the concatenated embeddings, then a scoring
layer (Fig. 1: embedding -> stacking -> multiple residual units -> scoring)."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.residual import ResidualUnit


class DeepCrossing(CTRModel):
    """``residual_hidden`` lists the inner width of each residual unit; every unit maps F*D back to F*D."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        residual_hidden: list[int],
    ) -> None:
        super().__init__()
        dim = feature_map.num_fields * embedding_dim
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.residual_units = nn.Sequential(*(ResidualUnit(dim, hidden) for hidden in residual_hidden))
        self.scoring = nn.Linear(dim, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = self.embedding(batch).flatten(1)  # [B, F*D]
        return self.scoring(self.residual_units(stacked)).squeeze(-1)  # [B]
