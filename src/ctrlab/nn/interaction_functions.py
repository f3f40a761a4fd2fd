"""AIM's interaction functions (IFS, AIM eqs. 2, 13-14 and §4.2.3), at any order p >= 2, for a given list of
interactions, with function-wise or shared embeddings.

An interaction q = (q_1, ..., q_p) is a tuple of field indices (``units`` [U, p]). For each selected
(interaction, function) slot the block returns one scalar; with e_{q,k} the embedding of field q in the table
of function k (function-wise embeddings, eq. 14; the same table for every k with shared embeddings, eq. 13):

- ``inner``:          f = sum_d prod_q e_{q,d}                      (<e_i, e_j> at p = 2)
- ``outer``:          f = prod_q (w_qᵀ e_q)                         ((w_1ᵀ e_i)(w_2ᵀ e_j) at p = 2)
- ``vector_kernel``:  f = sum_d k_{u,d} prod_q e_{q,d}              (<e_i, e_j>_φ with φ = diag(k_u))
- ``scalar_kernel``:  f = k_u sum_d prod_q e_{q,d}                  (<e_i, e_j>_φ with φ = k_u I)

Outer product: the paper maps the d x d matrix e_i e_jᵀ to one output with a linear layer and, to avoid the
d² cost, restricts that layer to rank one, W = w_1 w_2ᵀ: <W, e_i e_jᵀ> = (w_1ᵀ e_i)(w_2ᵀ e_j) (§4.2.3), and
at order p the product of p projections. So the "linear layer" is the pair (w_1, w_2) itself; as in the authors'
code, w_q is shared by all interactions of the block (one w per position q), which keeps the outer function's
parameters at p·d.

Kernel products (eq. 2 names a matrix, a vector and a scalar kernel by the shape of φ): the vector kernel is a
diagonal φ per interaction (k_u ∈ R^d), the scalar kernel a multiple of the identity per interaction
(k_u ∈ R) — the authors' code has these two forms, one kernel per interaction, and extends them to order p by
the element-wise product of the p vectors as the paper says. Kernels start at 1, i.e. at the inner product
(FwFM's r starts at 1 for the same reason), w_q at N(0, 1/d) so that w_qᵀ e has the scale of e.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.nn.embedding import FeatureEmbedding

FUNCTIONS = ("inner", "outer", "vector_kernel", "scalar_kernel")  # the order of AIM §3.3 / Fig. 8


class InteractionFunctions(nn.Module):
    """The four interaction functions on the selected (interaction, function) slots.

    Args:
        units: [U, p] field indices of the interactions (each row one interaction of order p).
        dim: the embedding size d the functions see (after EDS padding, the common size).
        selected: [U, m] bool, the slots computed (IFS's kept functions per interaction); None = all (search).

    ``forward(emb)`` takes field embeddings [B, F, E, d] with E = m function-wise tables (table k for function k)
    or E = 1 shared table, and returns [B, S], one column per selected slot in row-major (unit, function)
    order (``slots`` [S, 2]); with every slot selected it views as [B, U, m]. Each function is computed once
    over all its interactions (a loop over the 4 functions, none over interactions).
    """

    def __init__(self, units: torch.Tensor, dim: int, selected: torch.Tensor | None = None) -> None:
        super().__init__()
        if units.dim() != 2 or units.shape[1] < 2:
            raise ValueError(f"units must be [U, p] with order p >= 2, got shape {tuple(units.shape)}")
        num_units, order = units.shape
        if selected is None:
            selected = torch.ones(num_units, len(FUNCTIONS), dtype=torch.bool)
        if selected.shape != (num_units, len(FUNCTIONS)):
            raise ValueError(
                f"selected must be [U, m] = [{num_units}, {len(FUNCTIONS)}] (functions {FUNCTIONS}), "
                f"got {tuple(selected.shape)}"
            )
        self.order = order
        self.register_buffer("units", units.long(), persistent=False)  # [U, p]
        self.register_buffer("slots", selected.nonzero(), persistent=False)  # [S, 2]: (unit, function)
        # per function: its units, and where its outputs go in the row-major slot order
        for k, name in enumerate(FUNCTIONS):
            self.register_buffer(f"units_{name}", selected[:, k].nonzero().squeeze(1), persistent=False)
        function_major = torch.cat([self.slots[self.slots[:, 1] == k] for k in range(len(FUNCTIONS))])
        order_of = {tuple(s): i for i, s in enumerate(function_major.tolist())}
        self.register_buffer(
            "to_slot_order", torch.tensor([order_of[tuple(s)] for s in self.slots.tolist()]), persistent=False
        )  # [S]: function-major position of each row-major slot
        counts = selected.sum(dim=0).tolist()  # per function, how many interactions use it
        self.vector_kernel = nn.Parameter(torch.ones(counts[FUNCTIONS.index("vector_kernel")], dim))  # [U_vk, d]
        self.scalar_kernel = nn.Parameter(torch.ones(counts[FUNCTIONS.index("scalar_kernel")]))  # [U_sk]
        has_outer = counts[FUNCTIONS.index("outer")] > 0
        self.outer_weight = nn.Parameter(torch.randn(order if has_outer else 0, dim) / math.sqrt(dim))  # [p, d]

    @property
    def num_slots(self) -> int:
        return self.slots.shape[0]

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        tables = emb.shape[2]
        if tables not in (1, len(FUNCTIONS)):
            raise ValueError(f"emb must be [B, F, E, d] with E = 1 (shared) or {len(FUNCTIONS)} (function-wise)")
        outputs = []
        for k, name in enumerate(FUNCTIONS):
            units = self.units[getattr(self, f"units_{name}")]  # [U_k, p]
            if units.shape[0] == 0:
                continue
            e = emb[:, units, k if tables > 1 else 0]  # [B, U_k, p, d]
            if name == "outer":
                outputs.append((e * self.outer_weight).sum(-1).prod(-1))  # prod_q w_qᵀ e_q: [B, U_k]
                continue
            product = e.prod(dim=2)  # [B, U_k, d]
            if name == "inner":
                outputs.append(product.sum(-1))
            elif name == "vector_kernel":
                outputs.append((product * self.vector_kernel).sum(-1))
            else:
                outputs.append(product.sum(-1) * self.scalar_kernel)
        return torch.cat(outputs, dim=1)[:, self.to_slot_order]  # [B, S], row-major (unit, function)


class FunctionWiseEmbedding(FeatureEmbedding):
    """One embedding table per interaction function (AIM eq. 14, "function-wise embeddings"), or one shared by all
    (``num_tables = 1``, eq. 13; Table 5's SE). A ``FeatureEmbedding`` of m·d columns — m tables side by side,
    one lookup, and the ``embedding`` parameter family — viewed per table: batch -> [B, F, E, d].
    """

    def __init__(self, feature_map: FeatureMap, num_tables: int, dim: int, init_std: float) -> None:
        super().__init__(feature_map, num_tables * dim, init_std)
        self.num_tables, self.dim = num_tables, dim

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = super().forward(batch)  # [B, F, E * d]
        return emb.view(*emb.shape[:2], self.num_tables, self.dim)  # [B, F, E, d]
