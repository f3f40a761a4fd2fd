"""FiBiNET (Huang et al. 2019): SENET re-weights the fields, bilinear interactions run on both the original
and the re-weighted embeddings, and their concatenation (the combination layer) feeds a DNN; the linear part
is added (ŷ = σ(w_0 + sum_i w_i x_i + y_dnn)).

``mlp_hidden: null`` makes the DNN a single linear read-out of the combination layer (the shallow FiBiNET).
The two bilinear layers have their own weights.
"""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.bilinear import BilinearInteraction, BilinearType
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.nn.senet import SENET


class FiBiNET(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        reduction_ratio: int,
        bilinear_type: BilinearType,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        super().__init__()
        self.linear = LinearTerm(feature_map)
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        num_fields = feature_map.num_fields
        num_pairs = num_fields * (num_fields - 1) // 2
        self.senet = SENET(num_fields, reduction_ratio)
        self.bilinear = BilinearInteraction(num_fields, embedding_dim, bilinear_type)  # on E
        self.bilinear_senet = BilinearInteraction(num_fields, embedding_dim, bilinear_type)  # on V = SENET(E)
        self.mlp = MLP(2 * num_pairs * embedding_dim, mlp_hidden or [], 1, mlp_dropout, mlp_norm)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # E: [B, F, D]
        p = self.bilinear(emb)  # [B, P, D]
        q = self.bilinear_senet(self.senet(emb))  # [B, P, D]
        combination = torch.cat([p, q], dim=1).flatten(1)  # [B, 2*P*D]
        return self.linear(batch) + self.mlp(combination).squeeze(-1)  # [B]
