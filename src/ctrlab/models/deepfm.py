"""DeepFM (Guo et al. 2017): FM and an MLP sharing one embedding, their logits summed.

``mlp_hidden: null`` switches the MLP off, leaving the interaction layer alone (DynInt Table 2).
``architecture``: an AIM interaction-function artifact's decisions add its kept (interaction, function) terms on
DeepFM's embedding to the logit, beside FM's pairs (AIM Table 10, "DeepFM+IF").
"""

from __future__ import annotations

from typing import Any

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.aim import transfer_interactions
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.fm import FMInteraction
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.search.space import Decisions


class DeepFM(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
        architecture: str | Decisions | None = None,
        architecture_weights: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.linear = LinearTerm(feature_map)
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.fm = FMInteraction()
        self.selected = (
            transfer_interactions(feature_map, architecture, architecture_weights, embedding_dim)
            if architecture is not None
            else None
        )
        self.mlp = (
            MLP(feature_map.num_fields * embedding_dim, mlp_hidden, 1, mlp_dropout, mlp_norm)
            if mlp_hidden is not None
            else None
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # [B, F, D]
        logit = self.linear(batch) + self.fm(emb).sum(dim=1)  # [B]
        if self.selected is not None:
            logit = logit + self.selected(emb).sum(dim=1)
        if self.mlp is not None:
            logit = logit + self.mlp(emb.flatten(1)).squeeze(-1)
        return logit
