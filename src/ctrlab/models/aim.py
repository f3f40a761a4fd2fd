"""AIM, the Automatic Interaction Machine (Zhu et al., TKDE; AIM §3, Fig. 6): one class whose ``stage`` builds one
of its three stages, each a ``SearchableModel`` (``ctrlab.search.space``) the search platform chains through
the architecture artifact.

- ``stage: interaction`` (*search interaction-IF*, FIS + IFS, eq. 14 with eq. 20): every candidate
  (interaction, function) slot of the searched order gives one scalar f_k(e_{q,k}) (``nn/interaction_functions``,
  function-wise embeddings or shared), gated by α'_{q,k} · BN(·) with BN without scale and shift; logit =
  linear + sum of the gated slots; no MLP. α' is the ``arch`` family (GRDA, ``optimizer=adam_grda``), so unneeded
  slots reach α' = 0 exactly and ``derive()`` keeps the others. Order 2 searches all pairs; order p > 2
  (``max_order: p``) takes the decisions of the order p - 1 search as ``architecture`` (and its raw α' as
  ``architecture_weights``) and searches the pool of Algorithm 1 built from them (``search/high_order.next_pool``:
  per function, the top floor(n/2) kept interactions by |α'| extended by each field they lack), the lower orders
  fixed. An empty pool (order p - 1 kept nothing) is searched as it is: nothing to decide, the lower orders train.
- ``stage: embed`` (*search embed*, EDS, eq. 15): the kept slots of stage 1 (``architecture`` = its decisions),
  no α (the authors' code cannot train α and β together: their BNs couple), and e' = β_i · BN(e) with
  β ∈ R^{n x d} (``arch``). ``derive()`` carries stage 1's decisions forward and adds the kept dimensions per
  field, so that its artifact alone describes the architecture for the re-train (the stage runner passes only
  the previous stage's artifact on).
- ``stage: retrain``: the kept slots, each field at its kept dimensions (``MixedDimEmbedding``, zero-padded to d
  for the functions; without an ``embedding_dim`` space, the full d: AIM-EDS), the gates α · BN(·) kept and
  trained like every other weight (Adam), plus an MLP (``mlp_hidden``, [700 x 5] in the paper) over the kept
  embedding coordinates, which the search stages do not have (§4.2.3).

Variants (Tables 4-5) are config overrides: ``functions: [inner]`` searches interactions only (AIM-IFS-EDS),
re-training from the interaction stage's artifact skips EDS (AIM-EDS), ``function_wise: false`` shares one
embedding across the functions (Table 5's SE).

Spaces: ``interaction_function`` (units: the interactions of every order, "f1×f4×f7"; options: the functions;
subset: a unit keeps any of its candidate functions, none = dropped) and, after EDS, ``embedding_dim`` (units:
the fields; options: the dimension indices "0".."d-1"; subset: the kept φ_i, eq. 17).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.eds import EmbeddingDimensionSearch, MixedDimEmbedding, kept_dimensions
from ctrlab.nn.embedding import LinearTerm
from ctrlab.nn.gate import InteractionGate
from ctrlab.nn.interaction_functions import FUNCTIONS, FunctionWiseEmbedding, InteractionFunctions
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.search.high_order import all_pairs, next_pool
from ctrlab.search.space import Decisions, SearchSpace

SPACE = "interaction_function"
DIM_SPACE = "embedding_dim"
STAGES = ("interaction", "embed", "retrain")
MAX_ORDERS = (2, 3, 4)
Stage = Literal["interaction", "embed", "retrain"]


@dataclass
class Order:
    """The interactions of one order: ``units`` [U, p] field indices, ``candidates`` [U, m] the (interaction,
    function) slots that may be kept (m = len(FUNCTIONS)), ``kept`` [U, m] the slots the decisions keep and
    ``alpha`` [U, m] the search's raw α' of them (0 elsewhere; Algorithm 1 ranks by it), both None for the order
    being searched; ``alpha`` also None when the artifact gave no weights (only an order-2 model can do without)."""

    units: torch.Tensor
    candidates: torch.Tensor
    kept: torch.Tensor | None
    alpha: torch.Tensor | None = None


def unit_names(units: torch.Tensor, fields: list[str]) -> list[str]:
    return ["×".join(fields[i] for i in row) for row in units.tolist()]


def read_orders(
    feature_map: FeatureMap,
    functions: tuple[str, ...],
    decisions: list[Any] | None,
    weights: Any,
    max_order: int,
    search: bool,
) -> list[Order]:
    """Orders 2..``max_order`` from the ``interaction_function`` decisions (one list of kept functions per unit,
    units in the order: all pairs, then each higher order's pool) and the artifact's raw weights of that space
    (``weights`` [U, len(functions)], needed from max_order 3 on). Order 2 is every pair with ``functions``; order
    p > 2 is the pool Algorithm 1 builds from order p - 1's kept slots ranked by |α'| (``next_pool``).
    ``search``: the decisions cover orders 2..max_order - 1 and the last order is searched (kept None);
    otherwise they cover all."""
    fields = [f.name for f in feature_map.fields]
    allowed = torch.tensor([f in functions for f in FUNCTIONS])  # [m]
    decided = list(decisions or [])
    # [len(decided), m]; required from order 3 on, read (and so checked) whenever given
    alpha = _alpha(weights, len(decided), functions) if weights is not None or max_order > 2 else None
    units = all_pairs(feature_map.num_fields)  # [P, 2]
    candidates = allowed.expand(len(units), -1).clone()  # [P, m]
    orders: list[Order] = []
    start = 0
    for p in range(2, max_order + 1):
        if p > 2:
            below = orders[-1]
            units, candidates = next_pool(below.units, torch.where(below.kept, below.alpha, 0.0), len(fields))
        if search and p == max_order:
            orders.append(Order(units, candidates, None))
            continue
        chunk = decided[start : start + len(units)]
        if len(chunk) < len(units):
            break
        kept = _kept(chunk, candidates, unit_names(units, fields), functions)
        orders.append(Order(units, candidates, kept, None if alpha is None else alpha[start : start + len(units)]))
        start += len(units)
    covered = max_order - 1 if search else max_order
    if len(orders) != max_order - 1 or start != len(decided):
        raise ValueError(
            f"model.architecture: space {SPACE!r} has {len(decided)} decisions; AIM with model.max_order="
            f"{max_order} and this stage expects the decisions of orders 2..{covered} "
            f"({sum(len(o.units) for o in orders[: covered - 1])} units when they come from one search chain)"
            if covered >= 2
            else f"model.architecture: AIM's order-2 interaction search starts from model.architecture=null, "
            f"got {len(decided)} decisions"
        )
    return orders


def _alpha(weights: Any, units: int, functions: tuple[str, ...]) -> torch.Tensor:
    """The artifact's raw α' [U, len(functions)] as [U, m] over ``FUNCTIONS`` (0 for the functions not
    configured), checked: Algorithm 1 cannot rank order p - 1's interactions without them."""
    alpha = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if alpha is None or alpha.shape != (units, len(functions)):
        got = "none" if alpha is None else f"shape {list(alpha.shape)}"
        raise ValueError(
            f"model.architecture: an AIM model above order 2 builds each higher order's pool from the top "
            f"interactions by |α'| (Algorithm 1), so it needs the artifact's weights of space {SPACE!r}, "
            f"[{units}, {len(functions)}] for these decisions and model.functions={list(functions)}; got {got} "
            "(a search writes them; a random draw or an artifact of other functions has none that fit)"
        )
    full = torch.zeros(units, len(FUNCTIONS))
    full[:, [FUNCTIONS.index(f) for f in functions]] = alpha
    return full


def _kept(chunk: list[Any], candidates: torch.Tensor, names: list[str], functions: tuple[str, ...]) -> torch.Tensor:
    """[U, m] bool from one decision per unit (a list of function names among the unit's candidates)."""
    kept = torch.zeros_like(candidates)
    for u, (name, decision) in enumerate(zip(names, chunk, strict=True)):
        allowed = [f for f, ok in zip(FUNCTIONS, candidates[u].tolist(), strict=True) if ok and f in functions]
        if not isinstance(decision, list) or any(d not in allowed for d in decision):
            raise ValueError(
                f"model.architecture: space {SPACE!r}, unit {name!r}: {decision!r}; allowed: a list of "
                f"{', '.join(allowed) or 'nothing (no candidate function)'}"
            )
        kept[u, [FUNCTIONS.index(d) for d in decision]] = True
    return kept


def decisions_of(orders: list[Order], kept_last: torch.Tensor | None = None) -> list[list[str]]:
    """One list of kept function names per unit over all orders (the last order's kept from ``kept_last`` when
    given)."""
    masks = [o.kept for o in orders[:-1]] + [kept_last if kept_last is not None else orders[-1].kept]
    return [[f for f, k in zip(FUNCTIONS, row, strict=True) if k] for mask in masks for row in mask.tolist()]


class SelectedInteractions(nn.Module):
    """The kept (interaction, function) slots of every order on one embedding: a list of per-order
    ``InteractionFunctions``. emb [B, F, E, d] (or one shared table, [B, F, d]) -> [B, S], S the kept slots of all
    orders (orders in turn). AIM's stages use it, and DeepFM / PNN take an AIM artifact through it (Table 10,
    transfer; ``out_features`` as PNN's product layers)."""

    def __init__(self, orders: list[Order], dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            InteractionFunctions(o.units, dim, o.candidates if o.kept is None else o.kept) for o in orders
        )

    @property
    def num_slots(self) -> int:
        return sum(b.num_slots for b in self.blocks)

    out_features = num_slots

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        if emb.dim() == 3:
            emb = emb[:, :, None]  # [B, F, 1, d]: one table for every function
        return torch.cat([b(emb) for b in self.blocks if b.num_slots], dim=1)  # [B, S]


def transfer_interactions(
    feature_map: FeatureMap, architecture: Decisions, weights: dict[str, Any] | None, dim: int
) -> SelectedInteractions:
    """The slots an AIM interaction-function artifact keeps, on a model with one shared embedding of size ``dim``
    (DeepFM, PNN; AIM Table 10). Its orders are read off the decisions (2, 3 or 4); orders 3-4 need the artifact's
    ``weights`` (``architecture_weights``) to rebuild their pools."""
    if SPACE not in architecture:
        raise ValueError(
            f"model.architecture: a transfer takes the decisions of AIM's space {SPACE!r} (an interaction or "
            f"embed stage's artifact); got spaces {sorted(architecture)}"
        )
    errors = []
    for max_order in MAX_ORDERS:
        try:
            orders = read_orders(
                feature_map, FUNCTIONS, architecture[SPACE], (weights or {}).get(SPACE), max_order, search=False
            )
        except ValueError as err:
            errors.append(f"order {max_order}: {err}")
            continue
        return SelectedInteractions(orders, dim)
    raise ValueError(
        f"model.architecture: {len(architecture[SPACE])} decisions of space {SPACE!r} are not those of AIM orders "
        f"2..{MAX_ORDERS[-1]} on these {feature_map.num_fields} fields ({'; '.join(errors)})"
    )


class AIM(CTRModel):
    """AIM at one of its stages (module docstring). ``functions``: the candidate functions, a subset of
    ``FUNCTIONS`` (``[inner]`` alone is FIS without IFS); ``function_wise``: one embedding table per function
    (eq. 14) or one shared (eq. 13); ``mlp_*``: the re-train stage's MLP (null: none); ``architecture_weights``:
    the artifact's raw weights per space (``lit.module.build_model`` passes them), which Algorithm 1 ranks by."""

    def __init__(
        self,
        feature_map: FeatureMap,
        stage: Stage,
        max_order: int,
        functions: list[str],
        function_wise: bool,
        embedding_dim: int,
        embedding_init_std: float,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
        architecture: str | Decisions | None = None,
        architecture_weights: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        functions = tuple(functions)
        _check_config(stage, max_order, functions, function_wise, architecture)
        self.stage, self.functions, self.dim = stage, functions, embedding_dim
        self.fields = [f.name for f in feature_map.fields]
        decisions = (architecture or {}).get(SPACE)
        self.orders = read_orders(feature_map, functions, decisions, (architecture_weights or {}).get(SPACE), max_order,
                                  search=stage == "interaction")  # fmt: skip
        self.interactions = SelectedInteractions(self.orders, embedding_dim)
        tables = len(FUNCTIONS) if function_wise and len(functions) > 1 else 1
        self.linear = LinearTerm(feature_map)
        kept_dims = None
        if architecture is not None and DIM_SPACE in architecture:
            kept_dims = _kept_dims(architecture[DIM_SPACE], self.fields, embedding_dim)
        if kept_dims is not None:  # re-train after EDS: each field at its kept size, zero-padded to d
            self.embedding: nn.Module = MixedDimEmbedding(
                feature_map, kept_dims, embedding_dim, tables, embedding_init_std
            )
            coords = self.embedding.valid[:, None, :].expand(-1, tables, -1).clone()  # [F, E, d]
        else:
            self.embedding = FunctionWiseEmbedding(feature_map, tables, embedding_dim, embedding_init_std)
            coords = torch.ones(feature_map.num_fields, tables, embedding_dim, dtype=torch.bool)
        self.kept_dims = kept_dims
        self.eds = EmbeddingDimensionSearch(feature_map.num_fields, tables, embedding_dim) if stage == "embed" else None
        # fix(): 1 where the decisions keep a searched slot / dimension (OptInter Table IX's "without re-train")
        self.register_buffer("fixed_dims", torch.ones(feature_map.num_fields, embedding_dim), persistent=False)
        self.gates = (
            nn.ModuleList(InteractionGate(b.num_slots) for b in self.interactions.blocks) if stage != "embed" else None
        )
        self.register_buffer("fixed", torch.ones(self.interactions.blocks[-1].num_slots), persistent=False)
        self.register_buffer("mlp_coords", coords, persistent=False)  # [F, E, d]: the MLP's input coordinates
        self.mlp = (
            MLP(int(coords.sum()), mlp_hidden, 1, mlp_dropout, mlp_norm)
            if stage == "retrain" and mlp_hidden is not None
            else None
        )

    # --- CTRModel ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # [B, F, E, d]
        if self.eds is not None:
            emb = self.eds(emb) * self.fixed_dims[:, None, :]  # eq. 15: β_i · BN(e_i)
        logit = self.linear(batch)  # [B]
        for i, block in enumerate(self.interactions.blocks):
            if not block.num_slots:
                continue
            z = block(emb)  # [B, S_p]
            if self.gates is not None:
                z = self.gates[i](z)  # eq. 14 with eq. 20: α' · BN(f_k)
                if i == len(self.gates) - 1 and self.stage == "interaction":
                    z = z * self.fixed
            logit = logit + z.sum(dim=1)
        if self.mlp is not None:
            logit = logit + self.mlp(emb[:, self.mlp_coords]).squeeze(-1)
        return logit

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super().parameter_groups()
        if isinstance(self.embedding, MixedDimEmbedding):  # not a FeatureEmbedding: placed here by hand
            groups["embedding"] = [*groups.get("embedding", []), self.embedding.weight]
        arch = self._arch_parameters()
        moved = {id(p) for p in groups.get("embedding", [])} | {id(p) for p in arch}
        groups["dense"] = [p for p in groups.get("dense", []) if id(p) not in moved]
        groups["arch"] = arch
        return {k: v for k, v in groups.items() if v}

    def _arch_parameters(self) -> list[nn.Parameter]:
        """α' of the searched order (interaction stage) or β (embed stage); none in the re-train."""
        if self.stage == "interaction":
            return [self.gates[-1].alpha]
        if self.stage == "embed":
            return [self.eds.beta]
        return []

    # --- SearchableModel ---------------------------------------------------------------------------------------
    def search_spaces(self) -> list[SearchSpace]:
        names = [n for o in self.orders for n in unit_names(o.units, self.fields)]
        spaces = [SearchSpace(SPACE, tuple(names), self.functions, subset=True)]
        if self.stage == "embed" or self.kept_dims is not None:
            spaces.append(SearchSpace(DIM_SPACE, tuple(self.fields), tuple(map(str, range(self.dim))), subset=True))
        return spaces

    def architecture_weights(self) -> dict[str, torch.Tensor]:
        """α' [U, m'] over every unit and the configured functions: the decided orders' as received (carried on, so
        that later stages can rebuild Algorithm 1's pools from this stage's artifact alone) and, in the interaction
        stage, the searched order's own; embed: also β [F, d]. α' is left out when it was not received (an
        order-2 model built from decisions alone)."""
        self._require_search("architecture_weights")
        alphas = [o.alpha for o in self.orders if o.kept is not None]
        if self.stage == "interaction":
            block, last = self.interactions.blocks[-1], torch.zeros(len(self.orders[-1].units), len(FUNCTIONS))
            last[block.slots[:, 0], block.slots[:, 1]] = self.gates[-1].alpha.detach()
            alphas.append(last)
        weights = {DIM_SPACE: self.eds.beta.detach().clone()} if self.stage == "embed" else {}
        if all(a is not None for a in alphas):
            weights[SPACE] = torch.cat(alphas)[:, [FUNCTIONS.index(f) for f in self.functions]]  # [U, m']
        return weights

    def derive(self) -> Decisions:
        """interaction: the slots whose α' is not exactly zero (GRDA decides; no threshold) plus the lower orders
        as received; embed: stage 1's decisions carried forward and, per field, the dimensions with β != 0."""
        self._require_search("derive")
        if self.stage == "embed":
            return {
                SPACE: decisions_of(self.orders),
                DIM_SPACE: [list(map(str, dims)) for dims in kept_dimensions(self.eds.beta)],
            }
        block = self.interactions.blocks[-1]
        kept = torch.zeros_like(self.orders[-1].candidates)
        kept[block.slots[:, 0], block.slots[:, 1]] = self.gates[-1].alpha.detach() != 0
        return {SPACE: decisions_of(self.orders, kept)}

    def fix(self, decisions: Decisions) -> None:
        """Compute with these decisions from now on: the searched order's slots (interaction) or the fields'
        dimensions (embed) they drop are switched off, whatever α' / β say."""
        self._require_search("fix")
        if self.stage == "embed":
            kept = _kept_dims(decisions.get(DIM_SPACE), self.fields, self.dim)
            mask = torch.zeros_like(self.fixed_dims)
            for f, dims in enumerate(kept):
                mask[f, dims] = 1.0
            self.fixed_dims.copy_(mask)
            return
        chosen, last = decisions.get(SPACE), self.orders[-1]
        total = sum(len(o.units) for o in self.orders)
        if not isinstance(chosen, list) or len(chosen) != total:
            raise ValueError(f"AIM.fix: space {SPACE!r} needs {total} decisions, got {chosen!r:.80}")
        kept = _kept(chosen[total - len(last.units) :], last.candidates, unit_names(last.units, self.fields),
                     self.functions)  # fmt: skip
        block = self.interactions.blocks[-1]
        self.fixed.copy_(kept[block.slots[:, 0], block.slots[:, 1]].float())

    def set_temperature(self, tau: float) -> None:
        """No sampling in AIM: nothing to do."""

    def _require_search(self, hook: str) -> None:
        if self.stage == "retrain":
            raise RuntimeError(f"AIM.{hook}: this model is a re-train (model.stage=retrain), not a search")


def _kept_dims(decisions: Any, fields: list[str], dim: int) -> list[list[int]]:
    """Per field, the kept dimension indices (eq. 17) from the ``embedding_dim`` decisions, checked."""
    if not isinstance(decisions, list) or len(decisions) != len(fields):
        raise ValueError(
            f"model.architecture: space {DIM_SPACE!r} needs one decision per field ({len(fields)}), got "
            f"{decisions!r:.80}"
        )
    options = [str(j) for j in range(dim)]
    kept = []
    for name, decision in zip(fields, decisions, strict=True):
        if not isinstance(decision, list) or any(str(d) not in options for d in decision):
            raise ValueError(
                f"model.architecture: space {DIM_SPACE!r}, unit {name!r}: {decision!r}; allowed: a list of "
                f"dimension indices 0..{dim - 1} (model.embedding_dim={dim})"
            )
        kept.append(sorted(int(d) for d in decision))
    return kept


def _check_config(
    stage: str, max_order: int, functions: tuple[str, ...], function_wise: bool, architecture: Any
) -> None:
    """Every config mistake named before any work (key, value, allowed values)."""
    if stage not in STAGES:
        raise ValueError(f"model.stage={stage!r}; allowed: {', '.join(STAGES)}")
    if max_order not in MAX_ORDERS:
        raise ValueError(f"model.max_order={max_order}; allowed: {', '.join(map(str, MAX_ORDERS))}")
    if not functions or len(set(functions)) != len(functions) or any(f not in FUNCTIONS for f in functions):
        raise ValueError(f"model.functions={list(functions)}; allowed: distinct names among {', '.join(FUNCTIONS)}")
    if function_wise and 1 < len(functions) < len(FUNCTIONS):
        raise ValueError(
            f"model.function_wise=true with model.functions={list(functions)}: function-wise embeddings have one "
            f"table per function of all {len(FUNCTIONS)}; use all four functions, one, or function_wise=false"
        )
    if architecture is not None and not isinstance(architecture, dict):
        raise ValueError(
            f"model.architecture={architecture!r}: AIM takes null (order-2 interaction search) or an artifact's "
            "decisions (model.architecture=<path to architecture.json>)"
        )
    spaces = sorted(architecture or {})
    expected = {"interaction": [[], [SPACE]], "embed": [[SPACE]], "retrain": [[SPACE], sorted([SPACE, DIM_SPACE])]}
    if stage == "interaction" and spaces == [SPACE] and max_order == 2:
        raise ValueError(
            "model.architecture: an order-2 interaction search starts from null; decisions of earlier orders are "
            "for model.max_order=3 or 4"
        )
    if spaces not in expected[stage]:
        allowed = " or ".join(str(s) if s else "null" for s in expected[stage])
        raise ValueError(f"model.architecture with model.stage={stage}: spaces {spaces}; allowed: {allowed}")
