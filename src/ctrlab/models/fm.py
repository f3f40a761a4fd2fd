"""FM (Rendle 2010): ``w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j``."""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.fm import FMInteraction


class FM(CTRModel):
    def __init__(self, feature_map: FeatureMap, embedding_dim: int, embedding_init_std: float) -> None:
        super().__init__()
        self.linear = LinearTerm(feature_map)
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.fm = FMInteraction()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch) + self.fm(self.embedding(batch)).sum(dim=1)  # [B]
