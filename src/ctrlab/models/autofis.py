"""AutoFIS (Liu et al. 2020, KDD; AIM's FIS component alone, AIM eq. 12 with eq. 20) on DeepFM, the base model
both AIM's and OptInter's tables use: DeepFM whose pairwise inner products each pass a gate α · BN(·).

- Search (``architecture=None``): every pair is gated; α is the ``arch`` parameter family, trained by GRDA
  (``optimizer=adam_grda``), so that unneeded pairs reach α = 0 exactly. ``derive()`` keeps the pairs with α != 0.
- Re-train (``architecture=<Decisions>``): only the kept pairs are computed; their gates stay, as the attention
  units of the AutoFIS paper, trained with the rest (the ``dense`` family; the authors' re-train does so too).
- ``architecture="keep"`` / ``"drop"``: every pair kept (DeepFM with gates) / none (DeepFM without its FM part).
- Higher orders (AIM Table 3's AutoFIS rows, ``max_order`` 3 or 4; Algorithm 1): order p's inner product
  sum_d prod_q e_{q,d} over a pool built from order p - 1's kept interactions
  (``search/high_order.extend_per_function``). ``architecture`` = the decisions of orders 2..p-1 searches order
  p (the lower orders fixed, their gates trained with the rest); decisions of orders 2..p re-train. The space's
  units are the interactions of every order ("f1×f4×f7") in that order.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.gate import InteractionGate
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.search.high_order import all_pairs, extend_per_function
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
        max_order: int = 2,
    ) -> None:
        super().__init__()
        if max_order not in (2, 3, 4):
            raise ValueError(f"model.max_order={max_order}; allowed: 2, 3, 4")
        self.names = [f.name for f in feature_map.fields]
        units, kept = self._orders(feature_map.num_fields, architecture, max_order)
        self.space = SearchSpace(
            SPACE, tuple("×".join(self.names[f] for f in row) for u in units for row in u.tolist()), OPTIONS
        )
        self.searching = kept[-1] is None
        self.received = kept[:-1] if self.searching else kept  # the decided orders' kept masks, for derive()
        chosen = [u if k is None else u[k] for u, k in zip(units, kept, strict=True)]  # [U_p, p] per order
        self.register_buffer("pairs", chosen[0], persistent=False)  # [U, 2]
        for p, u in enumerate(chosen[1:], start=3):
            self.register_buffer(f"units_{p}", u, persistent=False)  # [U_p, p]
        self.max_order = max_order
        self.linear = LinearTerm(feature_map)
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.gate = InteractionGate(len(self.pairs)) if len(self.pairs) else None
        self.high_gates = nn.ModuleList(InteractionGate(len(u)) for u in chosen[1:])  # orders 3.. (none at 2)
        # [U]: 0 where fix() drops a unit of the searched order
        self.register_buffer("fixed", torch.ones(len(chosen[-1])), persistent=False)
        self.mlp = (
            MLP(feature_map.num_fields * embedding_dim, mlp_hidden, 1, mlp_dropout, mlp_norm)
            if mlp_hidden is not None
            else None
        )

    def _orders(
        self, num_fields: int, architecture: str | Decisions | None, max_order: int
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Per order 2..max_order, every unit [U_p, p] and the decided kept mask [U_p] (None: the order searched).
        An option name decides every unit of every order; decisions cover orders 2..max_order (re-train) or
        2..max_order - 1 (search of max_order), each order's pool built from the previous order's kept units."""
        if architecture is not None and not isinstance(architecture, str) and set(architecture) != {SPACE}:
            raise ValueError(
                f"model.architecture: AutoFIS expects decisions for the space {SPACE!r}; got spaces "
                f"{sorted(architecture)}"
            )
        decided = None if architecture is None or isinstance(architecture, str) else list(architecture[SPACE])
        units, kept, start = [all_pairs(num_fields)], [], 0
        for p in range(2, max_order + 1):
            if p > 2:
                units.append(extend_per_function(units[-1], kept[-1][:, None], num_fields)[0])
                if not len(units[-1]) and decided is not None and start == len(decided):  # the order to search
                    raise ValueError(
                        f"model.architecture: no interaction of order {p - 1} is kept, so order {p} has no "
                        f"candidates to search (model.max_order={max_order})"
                    )
            if architecture is None or (decided is not None and start == len(decided) and p == max_order > 2):
                kept.append(None)  # the order this model searches
                continue
            names = ["×".join(self.names[f] for f in row) for row in units[-1].tolist()]
            chunk = [architecture] * len(names) if decided is None else decided[start : start + len(names)]
            start += len(names)
            if len(chunk) != len(names):
                raise ValueError(
                    f"model.architecture: AutoFIS with model.max_order={max_order} expects decisions for the space "
                    f"{SPACE!r} of orders 2..{max_order} (re-train) or 2..{max_order - 1} (search); "
                    f"{len(decided)} decisions end inside order {p} ({len(names)} units, {len(chunk)} given)"
                )
            for unit, decision in zip(names, chunk, strict=True):
                if decision not in OPTIONS:
                    raise ValueError(
                        f"model.architecture: space {SPACE!r}, unit {unit!r}: {decision!r}; allowed: "
                        f"{', '.join(OPTIONS)}"
                    )
            kept.append(torch.tensor([d == "keep" for d in chunk], dtype=torch.bool))
        if decided is not None and start != len(decided):
            raise ValueError(
                f"model.architecture: {len(decided)} decisions for the space {SPACE!r}, more than AutoFIS with "
                f"model.max_order={max_order} has units ({start})"
            )
        return units, kept

    # --- CTRModel ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # [B, F, D]
        logit = self.linear(batch)  # [B]
        gated = []
        if self.gate is not None:
            inner = (emb[:, self.pairs[:, 0]] * emb[:, self.pairs[:, 1]]).sum(-1)  # <e_i, e_j>: [B, U]
            gated.append(self.gate(inner))  # eq. 12 with eq. 20
        for p, gate in enumerate(self.high_gates, start=3):
            units = getattr(self, f"units_{p}")  # [U_p, p]
            if not len(units):  # a re-train whose order p kept nothing
                continue
            gated.append(gate(emb[:, units].prod(dim=2).sum(-1)))  # sum_d prod_q e_{q,d}: [B, U_p]
        if self.searching:
            gated[-1] = gated[-1] * self.fixed
        if gated:
            logit = logit + torch.cat(gated, dim=1).sum(dim=1)
        if self.mlp is not None:
            logit = logit + self.mlp(emb.flatten(1)).squeeze(-1)
        return logit

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        groups = super().parameter_groups()
        if self.searching:  # the searched order's α moves to `arch` (GRDA); the others are ordinary weights
            alpha = self._searched_gate().alpha
            groups["dense"] = [p for p in groups["dense"] if p is not alpha]
            groups["arch"] = [alpha]
        return {k: v for k, v in groups.items() if v}

    # --- SearchableModel ---------------------------------------------------------------------------------------
    def search_spaces(self) -> list[SearchSpace]:
        return [self.space]

    def architecture_weights(self) -> dict[str, torch.Tensor]:
        self._require_search("architecture_weights")
        alpha = self._searched_gate().alpha.detach()
        before = len(self.space.units) - len(alpha)
        return {SPACE: torch.cat([torch.zeros(before), alpha])}  # [U]: 0 for the orders not searched here

    def derive(self) -> Decisions:
        """Keep the searched units whose α is not exactly zero (GRDA's sparsity decides, no threshold); the lower
        orders as received."""
        self._require_search("derive")
        alpha = self._searched_gate().alpha.detach()
        kept = [*self.received, alpha != 0]
        return {SPACE: ["keep" if k else "drop" for mask in kept for k in mask.tolist()]}

    def fix(self, decisions: Decisions) -> None:
        self._require_search("fix")
        chosen = decisions.get(SPACE)
        if not isinstance(chosen, list) or len(chosen) != len(self.space.units):
            raise ValueError(f"AutoFIS.fix: space {SPACE!r} needs {len(self.space.units)} decisions")
        searched = chosen[len(chosen) - len(self.fixed) :]
        self.fixed.copy_(torch.tensor([d == "keep" for d in searched], dtype=torch.float))

    def _searched_gate(self) -> InteractionGate:
        return self.high_gates[-1] if len(self.high_gates) else self.gate

    def set_temperature(self, tau: float) -> None:
        """No sampling in AutoFIS: nothing to do."""

    def _require_search(self, hook: str) -> None:
        if not self.searching:
            raise RuntimeError(f"AutoFIS.{hook}: this model was built from an architecture, not for a search")
