"""DNN (a.k.a. FNN without FM pre-training): an MLP over the concatenated field embeddings."""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.mlp import MLP, Norm


class DNN(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        mlp_hidden: list[int],
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.mlp = MLP(feature_map.num_fields * embedding_dim, mlp_hidden, 1, mlp_dropout, mlp_norm)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mlp(self.embedding(batch).flatten(1)).squeeze(-1)  # [B, F*D] -> [B]
