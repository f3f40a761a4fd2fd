"""AutoFIS (Liu et al. 2020, KDD; AIM's FIS component alone, AIM eq. 12 with eq. 20) on DeepFM, the base model
both AIM's and OptInter's tables use: DeepFM whose pairwise inner products each pass a gate α · BN(·).

- Search (``architecture=None``): every pair is gated; α is the ``arch`` parameter family, trained by GRDA
  (``optimizer=adam_grda``), so that unneeded pairs reach α = 0 exactly. ``derive()`` keeps the pairs with α != 0.
- Re-train (``architecture=<Decisions>``): only the kept pairs are computed; their gates stay, as the attention
  units of the AutoFIS paper, trained with the rest (the ``dense`` family; the authors' re-train does so too).
- ``architecture="keep"`` / ``"drop"``: every pair kept (DeepFM with gates) / none (DeepFM without its FM part).
- Higher orders (AIM Table 3's AutoFIS rows, ``max_order`` 3 or 4; Algorithm 1): order p's inner product
  sum_d prod_q e_{q,d} over the pool of order p - 1's top floor(n/2) kept interactions by |α|, each extended by
  every field it lacks (``search/high_order.next_pool``; ``architecture_weights`` = the artifact's raw α, which
  every search carries on for the orders below). ``architecture`` = the decisions of orders 2..p-1 searches
  order p (the lower orders fixed, their gates trained with the rest); decisions of orders 2..p re-train. The
  space's units are the interactions of every order ("f1×f4×f7") in that order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.gate import InteractionGate
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.search.high_order import all_pairs, next_pool
from ctrlab.search.space import Decisions, SearchSpace

SPACE = "interaction"
OPTIONS = ("keep", "drop")


class AutoFIS(CTRModel):
    """DeepFM with FIS gates on its 2nd-order interactions; a ``SearchableModel`` with one space,
    ``interaction`` (units: the field pairs "a×b", options keep / drop, architecture weights α [U]).
    ``architecture_weights``: the artifact's raw weights per space (``lit.module.build_model`` passes them),
    which the pools of orders 3-4 are ranked by."""

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
        architecture_weights: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if max_order not in (2, 3, 4):
            raise ValueError(f"model.max_order={max_order}; allowed: 2, 3, 4")
        self.names = [f.name for f in feature_map.fields]
        units, kept, alpha = self._orders(feature_map.num_fields, architecture, architecture_weights, max_order)
        self.space = SearchSpace(
            SPACE, tuple("×".join(self.names[f] for f in row) for u in units for row in u.tolist()), OPTIONS
        )
        self.searching = kept[-1] is None
        self.received = kept[:-1] if self.searching else kept  # the decided orders' kept masks, for derive()
        self.received_alpha = alpha  # [U_decided] or None: the decided orders' α, carried on by architecture_weights
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
        self, num_fields: int, architecture: str | Decisions | None, weights: dict[str, Any] | None, max_order: int
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None], torch.Tensor | None]:
        """Per order 2..max_order, every unit [U_p, p] and the decided kept mask [U_p] (None: the order searched),
        and the decided orders' α [U_decided] (None when not given). An option name decides every unit of order 2;
        decisions cover orders 2..max_order (re-train) or 2..max_order - 1 (search of max_order), each higher
        order's pool built from the previous order's kept units ranked by |α| (Algorithm 1)."""
        if architecture is not None and not isinstance(architecture, str) and set(architecture) != {SPACE}:
            raise ValueError(
                f"model.architecture: AutoFIS expects decisions for the space {SPACE!r}; got spaces "
                f"{sorted(architecture)}"
            )
        if (architecture is None or isinstance(architecture, str)) and max_order > 2:
            raise ValueError(
                f"model.architecture={architecture!r} with model.max_order={max_order}: orders above 2 are built "
                "from the artifact of the search of the order below (Algorithm 1 ranks its kept units by α); null "
                "searches order 2 and an option name decides order 2 only"
            )
        decided = None if architecture is None or isinstance(architecture, str) else list(architecture[SPACE])
        alpha = None
        if decided is not None and (max_order > 2 or (weights or {}).get(SPACE) is not None):
            alpha = _alpha((weights or {}).get(SPACE), len(decided))
        units, kept, start = [all_pairs(num_fields)], [], 0
        for p in range(2, max_order + 1):
            if p > 2:
                below = alpha[start - len(units[-1]) : start].where(kept[-1], 0.0)  # [U_{p-1}]: dropped -> 0
                units.append(next_pool(units[-1], below[:, None], num_fields)[0])
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
        return units, kept, alpha

    # --- CTRModel ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # [B, F, D]
        logit = self.linear(batch)  # [B]
        gated = []
        for p, gate in enumerate([self.gate, *self.high_gates], start=2):
            units = self.pairs if p == 2 else getattr(self, f"units_{p}")  # [U_p, p]
            if not len(units):  # an order that kept nothing, or a search whose pool is empty (order p - 1 kept none)
                continue
            z = gate(emb[:, units].prod(dim=2).sum(-1))  # sum_d prod_q e_{q,d} (<e_i, e_j> at p = 2), eq. 12 + 20
            gated.append(z * self.fixed if self.searching and p == self.max_order else z)  # [B, U_p]
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
        """α [U]: the decided orders' as received (carried on for the next order's pool; 0 when not received, at
        order 2 alone) and the searched order's own."""
        self._require_search("architecture_weights")
        alpha = self._searched_gate().alpha.detach()
        before = len(self.space.units) - len(alpha)
        received = self.received_alpha if self.received_alpha is not None else torch.zeros(before)
        return {SPACE: torch.cat([received, alpha])}

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


def _alpha(weights: Any, units: int) -> torch.Tensor:
    """The artifact's raw α [U] of the space ``interaction``, checked: Algorithm 1 ranks the kept units by it."""
    alpha = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if alpha is None or alpha.shape != (units,):
        got = "none" if alpha is None else f"shape {list(alpha.shape)}"
        raise ValueError(
            f"model.architecture: AutoFIS above order 2 builds each higher order's pool from the top interactions "
            f"by |α| (Algorithm 1), so it needs the artifact's weights of space {SPACE!r}, [{units}] for these "
            f"decisions; got {got} (a search writes them; a random draw has none)"
        )
    return alpha
