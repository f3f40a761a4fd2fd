"""Poly2 (Chang et al. 2010): LR plus one weight per value of every cross of two categorical fields.

    y(x) = b + sum_i w_i x_i + sum_{(a, c)} w_{a,c}[(x_a, x_c)]

The cross weights are memorized: each cross value seen ``min_count`` times in train has its own weight
(``data.crosses``; the others share their cross's OOV weight), unlike FM's factorized <v_a, v_c>.
"""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import CrossEmbedding, LinearTerm


class Poly2(CTRModel):
    def __init__(self, feature_map: FeatureMap) -> None:
        super().__init__()
        self.linear = LinearTerm(feature_map)
        self.cross_weights = CrossEmbedding(feature_map, dim=1, init_std=0.0)  # w_{a,c}[.]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch) + self.cross_weights(batch).sum(dim=(1, 2))  # [B]
