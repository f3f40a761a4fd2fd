"""Fi-GNN (Li et al. 2019): the field embeddings are the initial node states of a fully connected feature
graph with attentional edge weights; the states interact for ``graph_steps`` steps (per-node edge-wise
transformation, GRU update, residual to the embeddings) and an attentional scoring layer reads the logit out.

The paper puts AutoInt's multi-head self-attention layer in front of the graph; like the authors' Criteo code,
this implementation feeds the embeddings to the graph directly.
"""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.graph import AttentionalScoring, FieldGraph


class FiGNN(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        graph_steps: int,
        graph_residual: bool,
    ) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.graph = FieldGraph(feature_map.num_fields, embedding_dim, graph_steps, graph_residual)
        self.scoring = AttentionalScoring(embedding_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scoring(self.graph(self.embedding(batch)))  # [B, F, D] -> [B]
