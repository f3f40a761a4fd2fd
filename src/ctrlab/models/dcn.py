"""DCN (Wang et al. 2017) and DCN V2 (Wang et al. 2021): a cross network on x_0 = [e_1, ..., e_F] with a DNN.

One model serves four paper rows by config (``cross_type`` picks the cross network, see ``ctrlab.nn.cross``):

- ``crossnet`` (DPN Table 1):  cross_type v1, no DNN — the cross network and its output layer alone
- ``dcn``:                      cross_type v1, cross network ∥ DNN (DCN's parallel structure)
- ``dcn_v2``:                   cross_type full (or low_rank / mixture), stacked or parallel with the DNN
- ``crossmix`` (DPN Table 1):  cross_type mixture, no DNN

``structure`` places the DNN (DCN V2 Fig. 1): ``parallel`` feeds x_0 to both and concatenates their outputs
before the output layer (DCN eq. 5); ``stacked`` feeds the cross network's output into the DNN.
``mlp_hidden: null`` drops the DNN, leaving the interaction layer alone (DynInt Table 2).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.cross import Activation, CrossType, cross_network
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.mlp import MLP, Norm

Structure = Literal["parallel", "stacked"]


class DCN(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        cross_type: CrossType,
        cross_layers: int,
        cross_rank: int | None,
        cross_experts: int | None,
        cross_activation: Activation | None,
        structure: Structure,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        super().__init__()
        if structure not in ("parallel", "stacked"):
            raise ValueError(f"structure must be parallel or stacked; got {structure!r}")
        dim = feature_map.num_fields * embedding_dim
        self.structure = structure
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.cross = cross_network(cross_type, dim, cross_layers, cross_rank, cross_experts, cross_activation)
        self.mlp = MLP(dim, mlp_hidden, None, mlp_dropout, mlp_norm) if mlp_hidden is not None else None
        if self.mlp is None:
            head_dim = dim
        else:
            head_dim = self.mlp.out_dim + (dim if structure == "parallel" else 0)
        self.output = nn.Linear(head_dim, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0 = self.embedding(batch).flatten(1)  # [B, F*D]
        h = self.cross(x0)  # x_L: [B, F*D]
        if self.mlp is not None and self.structure == "stacked":
            h = self.mlp(h)  # [B, H]
        elif self.mlp is not None:
            h = torch.cat([h, self.mlp(x0)], dim=1)  # [B, F*D + H]
        return self.output(h).squeeze(-1)  # [B]
