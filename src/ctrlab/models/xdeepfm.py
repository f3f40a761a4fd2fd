"""xDeepFM (Lian et al. 2018): linear part + CIN + DNN on one shared embedding, their logits summed
(eq. 9: ŷ = σ(w_linear^T a + w_dnn^T x_dnn + w_cin^T p^+ + b)).

The same class is CIN alone (``cin``, DPN Table 1; xDeepFM's eq. 8 output ``σ(w^T p^+ + b)``):
``linear: false`` and ``mlp_hidden: null``. ``mlp_hidden: null`` with the linear part is xDeepFM's
interaction layer alone (DynInt Table 2).

``cin_split_half``: ``false`` (default) is the CIN of xDeepFM's equations; ``true`` is its released code's
split-half CIN, which produced the xDeepFM paper's own numbers (``ctrlab.nn.cin``).
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.cin import CIN
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.mlp import MLP, Norm


class XDeepFM(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        linear: bool,
        cin_layers: list[int],
        cin_split_half: bool,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        super().__init__()
        self.linear = LinearTerm(feature_map) if linear else None
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.cin = CIN(feature_map.num_fields, cin_layers, cin_split_half)
        self.cin_output = nn.Linear(self.cin.out_dim, 1)  # w_cin, b
        dim = feature_map.num_fields * embedding_dim
        self.mlp = MLP(dim, mlp_hidden, 1, mlp_dropout, mlp_norm) if mlp_hidden is not None else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # [B, F, D]
        logit = self.cin_output(self.cin(emb)).squeeze(-1)  # [B]
        if self.linear is not None:
            logit = logit + self.linear(batch)
        if self.mlp is not None:
            logit = logit + self.mlp(emb.flatten(1)).squeeze(-1)
        return logit
