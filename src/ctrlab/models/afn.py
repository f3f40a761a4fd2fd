"""AFN (Cheng et al. 2020): logarithmic neurons learn cross features of adaptive order from the embeddings,
and an MLP maps them to the logit. AFN+ (``afn_plus``) ensembles AFN with a DNN that has its own embedding
table: ``ŷ = σ(w_1 ŷ_AFN + w_2 ŷ_DNN + b)``, w_1 = w_2 = 0.5 at the start (authors' code).

``mlp_hidden`` is the ensembled DNN (null: plain AFN); ``afn_hidden`` is AFN's own MLP. ``shared_embedding``
gives the DNN AFN's embedding table instead of its own (ablation=shared_embedding). Unlike the authors'
code, AFN+ is trained end to end on the ensemble's loss alone: their code adds the two parts' own losses and
stops the ensemble's gradient into them, which the one-logit model contract cannot express.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.logarithmic import LogarithmicTransform
from ctrlab.nn.mlp import MLP, Norm


class AFN(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        log_neurons: int,
        log_min_abs: float,
        log_batch_norm: bool,
        afn_hidden: list[int],
        afn_dropout: float,
        afn_norm: Norm,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
        shared_embedding: bool,
    ) -> None:
        super().__init__()
        num_fields = feature_map.num_fields
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.log_layer = LogarithmicTransform(num_fields, log_neurons, log_min_abs, log_batch_norm)
        self.afn_mlp = MLP(log_neurons * embedding_dim, afn_hidden, 1, afn_dropout, afn_norm)
        self.dnn_embedding = self.mlp = self.ensemble = None
        if mlp_hidden is not None:
            # one table for both parts, or the DNN's own (the authors' AFN+): one module under two names
            self.dnn_embedding = (
                self.embedding if shared_embedding else FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
            )
            self.mlp = MLP(num_fields * embedding_dim, mlp_hidden, 1, mlp_dropout, mlp_norm)
            self.ensemble = nn.Linear(2, 1)  # [w_1, w_2], b
            nn.init.constant_(self.ensemble.weight, 0.5)
            nn.init.zeros_(self.ensemble.bias)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cross = self.log_layer(self.embedding(batch))  # [B, N, D]
        afn = self.afn_mlp(cross.flatten(1))  # ŷ_AFN: [B, 1]
        if self.mlp is None:
            return afn.squeeze(-1)
        dnn = self.mlp(self.dnn_embedding(batch).flatten(1))  # ŷ_DNN: [B, 1]
        return self.ensemble(torch.cat([afn, dnn], dim=1)).squeeze(-1)  # [B]
