"""LR: logistic regression over the one-hot features."""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import LinearTerm


class LR(CTRModel):
    def __init__(self, feature_map: FeatureMap) -> None:
        super().__init__()
        self.linear = LinearTerm(feature_map)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch)  # [B]
