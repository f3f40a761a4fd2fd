"""AutoFIS (Liu et al. 2020, KDD; AIM's FIS component alone, AIM eq. 12 with eq. 20) on DeepFM, the base model
both AIM's and OptInter's tables use: DeepFM whose pairwise inner products each pass a gate α · BN(·).

- Search (``architecture=None``): every pair is gated; α is the ``arch`` parameter family, trained by GRDA
  (``optimizer=adam_grda``), so that unneeded pairs reach α = 0 exactly. ``derive()`` keeps the pairs with α != 0.
- Re-train (``architecture=<Decisions>``): only the kept pairs are computed; their gates stay, as the attention
  units of the AutoFIS paper, trained with the rest (the ``dense`` family; the authors' re-train does so too).
- ``architecture="keep"`` / ``"drop"``: every pair kept (DeepFM with gates) / none (DeepFM without its FM part).
"""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.gate import InteractionGate
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.search.high_order import all_pairs
from ctrlab.search.space import Decisions, SearchSpace

SPACE = "interaction"
OPTIONS = ("keep", "drop")


class AutoFIS(CTRModel):
    """DeepFM with FIS gates on its 2nd-order interactions; a ``SearchableModel`` with one space,
    ``interaction`` (units: the field pairs "a×b", options keep / drop, architecture weights α [U])."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
        architecture: str | Decisions | None = None,
    ) -> None:
        super().__init__()
        pairs = all_pairs(feature_map.num_fields)  # [P, 2]
        names = [f.name for f in feature_map.fields]
        self.space = SearchSpace(SPACE, tuple(f"{names[a]}×{names[b]}" for a, b in pairs.tolist()), OPTIONS)
        self.searching = architecture is None
        keep = torch.ones(len(pairs), dtype=torch.bool) if self.searching else self._kept(architecture)
        self.register_buffer("pairs", pairs[keep], persistent=False)  # [U, 2]
        self.linear = LinearTerm(feature_map)
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.gate = InteractionGate(len(self.pairs)) if len(self.pairs) else None
        self.register_buffer("fixed", torch.ones(len(self.pairs)), persistent=False)  # [U]: 0 where fix() drops
        self.mlp = (
            MLP(feature_map.num_fields * embedding_dim, mlp_hidden, 1, mlp_dropout, mlp_norm)
            if mlp_hidden is not None
            else None
        )

    def _kept(self, architecture: str | Decisions) -> torch.Tensor:
        """[P] bool from an option name (every pair takes it) or from decisions, checked against the space."""
        units = self.space.units
        if isinstance(architecture, str):
            decisions = [architecture] * len(units)
        else:
            if set(architecture) != {SPACE} or len(architecture[SPACE]) != len(units):
                raise ValueError(
                    f"model.architecture: AutoFIS expects decisions for the space {SPACE!r} with {len(units)} "
                    f"units (field pairs); got spaces {sorted(architecture)} with "
                    f"{[len(v) for v in architecture.values()]} decisions"
                )
            decisions = architecture[SPACE]
        for unit, decision in zip(units, decisions, strict=True):
            if decision not in OPTIONS:
                raise ValueError(
                    f"model.architecture: space {SPACE!r}, unit {unit!r}: {decision!r}; allowed: {', '.join(OPTIONS)}"
                )
        return torch.tensor([d == "keep" for d in decisions])

    # --- CTRModel ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # [B, F, D]
        logit = self.linear(batch)  # [B]
        if self.gate is not None:
            inner = (emb[:, self.pairs[:, 0]] * emb[:, self.pairs[:, 1]]).sum(-1)  # <e_i, e_j>: [B, U]
            logit = logit + (self.gate(inner) * self.fixed).sum(dim=1)  # eq. 12 with eq. 20
        if self.mlp is not None:
            logit = logit + self.mlp(emb.flatten(1)).squeeze(-1)
        return logit

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        groups = super().parameter_groups()
        if self.searching:  # α moves to `arch` (GRDA); in a re-train it is an ordinary weight
            groups["dense"] = [p for p in groups["dense"] if p is not self.gate.alpha]
            groups["arch"] = [self.gate.alpha]
        return {k: v for k, v in groups.items() if v}

    # --- SearchableModel ---------------------------------------------------------------------------------------
    def search_spaces(self) -> list[SearchSpace]:
        return [self.space]

    def architecture_weights(self) -> dict[str, torch.Tensor]:
        self._require_search("architecture_weights")
        return {SPACE: self.gate.alpha.detach().clone()}  # [U]

    def derive(self) -> Decisions:
        """Keep the pairs whose α is not exactly zero (GRDA's sparsity decides, no threshold)."""
        self._require_search("derive")
        return {SPACE: ["keep" if a != 0 else "drop" for a in self.gate.alpha.tolist()]}

    def fix(self, decisions: Decisions) -> None:
        self._require_search("fix")
        self.fixed.copy_(self._kept(decisions).float())

    def set_temperature(self, tau: float) -> None:
        """No sampling in AutoFIS: nothing to do."""

    def _require_search(self, hook: str) -> None:
        if not self.searching:
            raise RuntimeError(f"AutoFIS.{hook}: this model was built from an architecture, not for a search")
