"""Shallow factorization models: FM's first-order term plus one pairwise (or higher-order) interaction.

    FwFM  (Pan et al. 2018):     w0 + sum_i w_i + sum_{i<j} r_{F(i),F(j)} <v_i, v_j>
    FmFM  (Sun et al. 2021):     w0 + sum_i w_i + sum_{i<j} v_i^T M_{F(i),F(j)} v_j
    FFM   (Juan et al. 2016):    w0 + sum_i w_i + sum_{i<j} <v_{i,F(j)}, v_{j,F(i)}>
    HOFM  (Blondel et al. 2016): w0 + sum_i w_i + sum_{t=2}^m sum_d A^t(P^(t))_d   (one table P^(t) per order)
    AFM   (Xiao et al. 2017):    w0 + sum_i w_i + p^T sum_{i<j} a_ij (v_i ⊙ v_j)
    NFM   (He & Chua 2017):      w0 + sum_i w_i + MLP(f_BI),  f_BI = sum_{i<j} v_i ⊙ v_j

Every feature's value x_i is folded into its embedding by ``FeatureEmbedding``, so ``v_i`` stands for
``v_i x_i`` throughout. NFM is the one model here with a DNN: ``mlp_hidden: null`` leaves NFM-0, a linear
projection h^T f_BI of the bi-interaction vector.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.anova import AnovaKernel
from ctrlab.nn.attention_pooling import AttentionalPooling
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.ffm import FieldAwareInteraction
from ctrlab.nn.fm import FMInteraction
from ctrlab.nn.fmfm import FieldMatrixedInteraction
from ctrlab.nn.fwfm import FieldWeightedInteraction
from ctrlab.nn.mlp import MLP, Norm


class _LinearPlusInteraction(CTRModel):
    """``LinearTerm + interaction(embedding)``: the shape every model here but HOFM has ([B] each)."""

    def __init__(self, feature_map: FeatureMap, width: int, embedding_init_std: float, interaction: nn.Module) -> None:
        super().__init__()
        self.linear = LinearTerm(feature_map)
        self.embedding = FeatureEmbedding(feature_map, width, embedding_init_std)
        self.interaction = interaction

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch) + self.interaction(self.embedding(batch))  # [B]


class FwFM(_LinearPlusInteraction):
    """Field-weighted FM: FM with a learned strength r per field pair (the linear part is FwFM's plain LW)."""

    def __init__(self, feature_map: FeatureMap, embedding_dim: int, embedding_init_std: float) -> None:
        interaction = FieldWeightedInteraction(feature_map.num_fields)
        super().__init__(feature_map, embedding_dim, embedding_init_std, interaction)


class FmFM(_LinearPlusInteraction):
    """Field-matrixed FM: a D x D matrix per field pair between the two embeddings."""

    def __init__(self, feature_map: FeatureMap, embedding_dim: int, embedding_init_std: float) -> None:
        interaction = FieldMatrixedInteraction(feature_map.num_fields, embedding_dim)
        super().__init__(feature_map, embedding_dim, embedding_init_std, interaction)


class FFM(_LinearPlusInteraction):
    """Field-aware FM: one embedding per (feature, other field), looked up at once as a row of width F*D."""

    def __init__(self, feature_map: FeatureMap, embedding_dim: int, embedding_init_std: float) -> None:
        num_fields = feature_map.num_fields
        interaction = FieldAwareInteraction(num_fields, embedding_dim)
        super().__init__(feature_map, num_fields * embedding_dim, embedding_init_std, interaction)


class HOFM(CTRModel):
    """Higher-order FM up to ``order``: orders 2..m, each an ANOVA kernel over its own embedding table."""

    def __init__(self, feature_map: FeatureMap, embedding_dim: int, embedding_init_std: float, order: int) -> None:
        super().__init__()
        if order < 2:
            raise ValueError(f"HOFM order must be >= 2, got {order}")
        self.linear = LinearTerm(feature_map)
        orders = range(2, order + 1)
        self.embeddings = nn.ModuleList(  # P^(t), one table per order
            FeatureEmbedding(feature_map, embedding_dim, embedding_init_std) for _ in orders
        )
        self.kernels = nn.ModuleList(AnovaKernel(t) for t in orders)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logit = self.linear(batch)  # [B]
        for embedding, kernel in zip(self.embeddings, self.kernels, strict=True):  # over orders t = 2..m
            logit = logit + kernel(embedding(batch)).sum(dim=1)  # A^t summed over D: [B]
        return logit


class AFM(_LinearPlusInteraction):
    """Attentional FM: the pairwise products pooled by attention, dropout (AFM's, on f_Att), projection p."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        attention_dim: int,
        interaction_dropout: float,
    ) -> None:
        interaction = nn.Sequential(
            AttentionalPooling(embedding_dim, attention_dim),  # f_Att [B, D]
            nn.Dropout(interaction_dropout),
            nn.Linear(embedding_dim, 1, bias=False),  # p^T f_Att [B, 1]
            nn.Flatten(0),  # [B]
        )
        super().__init__(feature_map, embedding_dim, embedding_init_std, interaction)


class NFM(_LinearPlusInteraction):
    """Neural FM: bi-interaction pooling (FM's pairwise vector), dropout (NFM's, on f_BI), then an MLP."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        interaction_dropout: float,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        interaction = nn.Sequential(
            FMInteraction(),  # f_BI [B, D]
            nn.Dropout(interaction_dropout),
            MLP(embedding_dim, mlp_hidden or [], 1, mlp_dropout, mlp_norm),  # [] -> h^T f_BI (NFM-0): [B, 1]
            nn.Flatten(0),  # [B]
        )
        super().__init__(feature_map, embedding_dim, embedding_init_std, interaction)
