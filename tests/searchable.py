"""A test double of a searchable model (``ctrlab.search.space.SearchableModel``), for the platform's tests only.

``PairGateTestModel``: first-order terms plus, per field pair (i, j), the inner product <e_i, e_j> weighted by
the probability of the option "use" against "drop" (drop adds nothing):

    logit = w0 + sum_i w_i + sum_{i<j} p_ij,use * <e_i, e_j>,   p_ij = softmax(alpha_ij / tau)   # alpha [P, 2]

Fixed (``architecture`` an option name or ``Decisions``, or after ``fix``), p_ij is the one-hot of the decision.
It is not an OptInter: it has only what the platform's contract asks for, so the platform's tests do not depend
on a real searchable model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.search.space import Decisions, SearchSpace

OPTIONS = ("use", "drop")


class PairGateTestModel(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        architecture: str | dict[str, list[Any]] | None = None,
    ) -> None:
        super().__init__()
        self.linear = LinearTerm(feature_map)
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        names = [f.name for f in feature_map.fields]
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        self.space = SearchSpace("pair", tuple(f"{names[i]}×{names[j]}" for i, j in pairs), OPTIONS)
        self.register_buffer("left", torch.tensor([i for i, _ in pairs]), persistent=False)
        self.register_buffer("right", torch.tensor([j for _, j in pairs]), persistent=False)
        self.alpha = nn.Parameter(torch.randn(len(pairs), len(OPTIONS)) * 1e-3)  # [P, 2]
        self.tau = 1.0
        self.register_buffer("fixed", torch.zeros(len(pairs), len(OPTIONS)))  # [P, 2] one-hot once fixed
        self.is_fixed = False
        if isinstance(architecture, str):
            self.fix({"pair": [architecture] * len(pairs)})
        elif architecture is not None:
            self.fix(architecture)

    def search_spaces(self) -> list[SearchSpace]:
        return [self.space]

    def architecture_weights(self) -> dict[str, torch.Tensor]:
        return {"pair": self.alpha.detach()}

    def derive(self) -> Decisions:
        return {"pair": [OPTIONS[k] for k in self.alpha.argmax(dim=1).tolist()]}

    def fix(self, decisions: Decisions) -> None:
        chosen = decisions.get("pair")
        if chosen is None or len(chosen) != len(self.space.units) or any(d not in OPTIONS for d in chosen):
            raise ValueError(f"space 'pair' needs {len(self.space.units)} decisions among {OPTIONS}, got {chosen}")
        self.fixed = torch.eye(len(OPTIONS))[[OPTIONS.index(d) for d in chosen]]
        self.is_fixed = True

    def set_temperature(self, tau: float) -> None:
        self.tau = tau

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super().parameter_groups()
        groups["dense"] = [p for p in groups.get("dense", []) if p is not self.alpha]
        return {**{k: v for k, v in groups.items() if v}, "arch": [self.alpha]}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        e = self.embedding(batch)  # [B, F, D]
        dots = (e[:, self.left] * e[:, self.right]).sum(dim=-1)  # [B, P]
        p = self.fixed if self.is_fixed else torch.softmax(self.alpha / self.tau, dim=1)  # [P, 2]
        return self.linear(batch) + dots @ p[:, 0]  # [B]
