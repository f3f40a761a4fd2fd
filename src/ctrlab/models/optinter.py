"""OptInter (Lyu et al., ICDE 2022, "Memorize, Factorize, or be Naive"): per field pair, memorize, factorize or
ignore the interaction, chosen by a search (``SearchableModel``) or fixed.

    e^o = [e^o_1, ..., e^o_M]                     original embeddings, size s1 (eq. 7)
    e^m_(i,j) = E^m x^m_(i,j)                     memorized cross-product embedding, size s2 (eqs. 4, 8)
    e^f_(i,j) = a_i ⊙ a_j                         factorized: Hadamard product (eq. 14)
    e^n = empty                                   naive (eq. 15)
    e^b_(i,j) = sum_k p^k_(i,j) e^k_(i,j)         search: Gumbel-softmax weights p (eqs. 16-18)
    e^b_(i,j) = e^{k*}_(i,j)                      re-train: the chosen method (eq. 19)
    y = sigmoid(MLP([e^o, e^b])),  MLP layers a^{l+1} = LN(relu(W a^l + b))   (eqs. 9-12)

The units are the data's cross pairs (``data.crosses``; ``pairs: all`` = every pair of categorical fields, as the
authors' 325 Criteo / 276 Avazu pairs), named ``"<field a>×<field b>"`` in ``FeatureMap.cross_pairs`` order.

``architecture`` (``ctrlab.search.space``): None searches (architecture logits in the ``arch`` family); an option
name fixes every pair (``memorize`` = OptInter-M, ``factorize`` = OptInter-F, ``naive`` = FNN); ``Decisions``
fix each pair (re-train). A fixed model builds only what its pairs use: memorized table rows for the memorized
pairs alone, no factorization table without factorized pairs, and no MLP input for naive pairs (e^n is empty),
so ``num_parameters`` is Table V's "Param." of that architecture.

a_i, the factorized pair's inputs (``factorized_embedding``):
    ``separate`` (the authors' code, default): a second original-feature table of size s2, so that e^f and e^m
        have one size when s1 != s2; it is what makes OptInter-F 21M parameters on Criteo in Table V (FNN's 13M
        + 0.5M values x s2 10 + the wider first layer).
    ``original``: a_i = e^o_i, eq. 14 as printed; needs s1 == s2.
The search model (``architecture=None``) starts every table at N(0, ``search_init_std``²), as the authors'
search model does (nn.Embedding's N(0, 1)); a fixed architecture starts at ``embedding_init_std`` /
``cross_init_std``. Large random tables are noise the loss pushes out: a pair whose memorized or factorized
embedding does not learn anything useful then loses its weight to naive, which a near-zero start does not do
(measured on the ``memorize`` stand-in, docs/decisions.md "OptInter: when the search leaves pairs naive").
Both tables of size s2 are the ``cross`` parameter family (lr_c, l2_c of Table IV), as the authors' optimizer
groups them; e^o is ``embedding`` (lr_o, l2_o), the MLP ``dense``. See docs/decisions.md, "OptInter".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.combination import MethodCombination
from ctrlab.nn.embedding import CrossEmbedding, FeatureEmbedding
from ctrlab.nn.gumbel import GumbelMethodSelector
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.nn.pairs import hadamard_pairs
from ctrlab.search.space import Decisions, SearchSpace

SPACE = "pair_method"
OPTIONS = ("memorize", "factorize", "naive")  # the columns of the architecture logits [U, 3]


class OptInter(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        cross_dim: int,
        embedding_init_std: float,
        cross_init_std: float,
        search_init_std: float,
        mlp_hidden: list[int],
        mlp_norm: Norm = "layer",
        mlp_norm_after_relu: bool = True,
        mlp_dropout: float = 0.0,
        factorized_embedding: Literal["separate", "original"] = "separate",
        architecture: str | Decisions | None = None,
        temperature: float = 1.0,
        gumbel_noise: bool = False,
        gumbel_hard: bool = False,
        sparse_cross: bool = False,
    ) -> None:
        super().__init__()
        if factorized_embedding not in ("separate", "original"):
            raise ValueError(f"model.factorized_embedding={factorized_embedding!r} is not one of separate, original")
        if factorized_embedding == "original" and cross_dim != embedding_dim:
            raise ValueError(
                f"model.factorized_embedding=original factorizes the original embeddings (model.embedding_dim="
                f"{embedding_dim}), so model.cross_dim must equal it, not {cross_dim}; or use separate"
            )
        if not feature_map.cross_pairs:
            raise ValueError(
                f"{feature_map.dataset}: OptInter's units are the data's cross pairs; "
                "set data.crosses.enabled=true (configs/model/optinter.yaml does)"
            )
        names = [f.name for f in feature_map.fields]
        self.units = tuple(f"{names[a]}×{names[b]}" for a, b in feature_map.cross_pairs)
        self.decisions = self._checked(architecture)  # None: search
        pairs = torch.as_tensor(feature_map.cross_pairs, dtype=torch.long)  # [U, 2] field indices
        self.register_buffer("rows", pairs[:, 0], persistent=False)  # [U]
        self.register_buffer("cols", pairs[:, 1], persistent=False)  # [U]

        searching = self.decisions is None
        if searching:  # the search model's tables: the authors' N(0, 1) (see the class docstring)
            embedding_init_std = cross_init_std = search_init_std
        memorized = [u for u, d in enumerate(self.decisions or []) if d == "memorize"]
        factorized = [u for u, d in enumerate(self.decisions or []) if d == "factorize"]
        self.register_buffer("factorized", torch.as_tensor(factorized, dtype=torch.long), persistent=False)

        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)  # E^o
        self.memorized = (  # E^m, only the rows of the pairs that may be memorized
            CrossEmbedding(feature_map, cross_dim, cross_init_std, None if searching else memorized, sparse_cross)
            if searching or memorized
            else None
        )
        self.factor_table = (  # the authors' a_i of size s2
            FeatureEmbedding(feature_map, cross_dim, cross_init_std)
            if factorized_embedding == "separate" and (searching or factorized)
            else None
        )
        self.selector = (
            GumbelMethodSelector(len(self.units), len(OPTIONS), temperature, gumbel_noise, gumbel_hard)
            if searching
            else None
        )
        self.combination = MethodCombination(OPTIONS) if searching else None
        # set by fix(): one-hot [U, 3] in place of the selector's weights (not saved: fix() is a way to evaluate)
        self.register_buffer("fixed_weights", None, persistent=False)
        used_pairs = len(self.units) if searching else len(memorized) + len(factorized)
        in_dim = feature_map.num_fields * embedding_dim + used_pairs * cross_dim
        self.mlp = MLP(in_dim, mlp_hidden, 1, mlp_dropout, mlp_norm, mlp_norm_after_relu, xavier=True)

    def _checked(self, architecture: Any) -> list[str] | None:
        """The per-pair decisions that ``architecture`` gives, or None for search; bad input fails naming it."""
        if architecture is None:
            return None
        if isinstance(architecture, str):
            if architecture not in OPTIONS:
                raise ValueError(
                    f"model.architecture={architecture!r} is not one of {', '.join(OPTIONS)}, null (search) or "
                    "an architecture artifact's decisions"
                )
            return [architecture] * len(self.units)
        if not isinstance(architecture, Mapping) or set(architecture) != {SPACE}:
            got = sorted(architecture) if isinstance(architecture, Mapping) else type(architecture).__name__
            raise ValueError(f"model.architecture: OptInter's decisions have one space, {SPACE!r}; got {got}")
        decisions = [str(d) for d in architecture[SPACE]]
        if len(decisions) != len(self.units):
            raise ValueError(
                f"model.architecture: space {SPACE!r} has {len(decisions)} decisions, but this data has "
                f"{len(self.units)} field pairs ({self.units[0]}, ...)"
            )
        for unit, d in zip(self.units, decisions, strict=True):
            if d not in OPTIONS:
                raise ValueError(
                    f"model.architecture: space {SPACE!r}, unit {unit}: {d!r} is not one of {', '.join(OPTIONS)}"
                )
        return decisions

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        e_o = self.embedding(batch)  # [B, F, s1]
        inputs = [e_o.flatten(1)]
        a = self.factor_table(batch) if self.factor_table is not None else e_o  # [B, F, s2]
        if self.selector is not None:  # search (or fixed by fix()): eq. 18
            candidates = {
                "memorize": self.memorized(batch),  # [B, U, s2]
                "factorize": hadamard_pairs(a, self.rows, self.cols),  # [B, U, s2]
                "naive": None,
            }
            weights = self.fixed_weights if self.fixed_weights is not None else self.selector()  # [U, 3]
            inputs.append(self.combination(weights, candidates).flatten(1))  # [B, U * s2]
        else:  # eq. 19, built for the chosen methods only
            if self.memorized is not None:
                inputs.append(self.memorized(batch).flatten(1))  # [B, U_m * s2]
            if len(self.factorized):
                f = self.factorized
                inputs.append(hadamard_pairs(a, self.rows[f], self.cols[f]).flatten(1))  # [B, U_f * s2]
        return self.mlp(torch.cat(inputs, dim=1)).squeeze(-1)  # [B]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``embedding`` E^o, ``cross`` the size-s2 tables (E^m and the factorization table), ``arch`` the
        architecture logits, ``dense`` the MLP."""

        def params(*modules: nn.Module | None) -> list[nn.Parameter]:
            return [p for m in modules if m is not None for p in m.parameters()]

        groups = {
            "embedding": params(self.embedding),
            "cross": params(self.memorized, self.factor_table),
            "arch": params(self.selector),
        }
        taken = {id(p) for ps in groups.values() for p in ps}
        groups["dense"] = [p for p in self.parameters() if id(p) not in taken]
        return {k: v for k, v in groups.items() if v}

    # --- SearchableModel ---------------------------------------------------------------------------------------

    def search_spaces(self) -> list[SearchSpace]:
        return [SearchSpace(SPACE, self.units, OPTIONS)]

    def architecture_weights(self) -> dict[str, torch.Tensor]:
        """The architecture logits [U, 3] (columns ``OPTIONS``) of a search model; none for a fixed one."""
        return {SPACE: self.selector.logits.detach().clone()} if self.selector is not None else {}

    def derive(self) -> Decisions:
        """Eq. 19: the option of largest weight per pair (a fixed model: its own decisions)."""
        if self.selector is None:
            return {SPACE: list(self.decisions)}
        return {SPACE: [OPTIONS[k] for k in self.selector.logits.argmax(-1).tolist()]}

    def fix(self, decisions: Decisions) -> None:
        if self.selector is None:
            raise ValueError("fix() applies to a search model (architecture=null); this one is fixed already")
        chosen = torch.as_tensor([OPTIONS.index(d) for d in self._checked(decisions)])
        self.fixed_weights = nn.functional.one_hot(chosen, len(OPTIONS)).to(self.selector.logits)  # [U, 3]

    def set_temperature(self, tau: float) -> None:
        if self.selector is not None:
            self.selector.set_temperature(tau)
