"""Wide & Deep (Cheng et al. 2016): a linear "wide" part beside an MLP "deep" part, trained jointly.

The wide part here is LR over the raw features, as in DynInt's and FuxiCTR's comparisons; the original's
hand-picked cross-product features are not used (no feature engineering, DynInt §4.1.1).
"""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.mlp import MLP, Norm


class WideAndDeep(CTRModel):
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
        self.wide = LinearTerm(feature_map)
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.deep = MLP(feature_map.num_fields * embedding_dim, mlp_hidden, 1, mlp_dropout, mlp_norm)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        deep = self.deep(self.embedding(batch).flatten(1)).squeeze(-1)  # [B]
        return self.wide(batch) + deep
