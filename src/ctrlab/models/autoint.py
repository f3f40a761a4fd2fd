"""AutoInt (Song et al. 2019): stacked multi-head self-attentive interacting layers over the field embeddings,
the final field vectors concatenated into a logistic output layer (ŷ = σ(w^T (e^Res_1 ⊕ ... ⊕ e^Res_M) + b)).

AutoInt+ (``autoint_plus``, the paper's joint training with a feed-forward network) adds a DNN over the same
embeddings, the two logits summed; ``mlp_hidden: null`` is plain AutoInt (also DynInt Table 2's
interaction-layer-only AutoInt).

``attention_variant``: ``paper`` (default) is the interacting layer of AutoInt's equations; ``authors_code``
is the layer of AutoInt's released code (ReLU on the Q/K/V projections, scores scaled by 1/sqrt(d'), layer
norm), which produced the AutoInt paper's own numbers (``ctrlab.nn.self_attention``).
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.nn.self_attention import AttentionVariant, InteractingLayer


class AutoInt(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        attention_layers: int,
        attention_heads: int,
        attention_dim: int,
        attention_residual: bool,
        attention_variant: AttentionVariant,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        widths = [embedding_dim] + [attention_heads * attention_dim] * attention_layers
        self.interacting = nn.Sequential(
            *(
                InteractingLayer(w, attention_dim, attention_heads, attention_residual, attention_variant)
                for w in widths[:-1]
            )
        )
        self.output = nn.Linear(feature_map.num_fields * widths[-1], 1)
        dim = feature_map.num_fields * embedding_dim
        self.mlp = MLP(dim, mlp_hidden, 1, mlp_dropout, mlp_norm) if mlp_hidden is not None else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # [B, F, D]
        logit = self.output(self.interacting(emb).flatten(1)).squeeze(-1)  # [B, F, H*d'] -> [B]
        if self.mlp is not None:
            logit = logit + self.mlp(emb.flatten(1)).squeeze(-1)
        return logit
