"""Embedding dimension search (EDS, AIM §3.4, eqs. 15-18): a weight per (field, dimension) during the search, and
after it an embedding whose fields keep only the dimensions with a non-zero weight."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.nn.gate import arch_weights


class EmbeddingDimensionSearch(nn.Module):
    """``e'_i = β_i · BN(e_i)`` (eq. 15): β ∈ R^{n x d}, one weight per field and dimension, shared by the
    function-wise tables of a field (§3.4, "FWEs in the same field share the same set of architecture
    parameters"). As for FIS (§3.6: "similar training procedures are performed in IFS and EDS"), each
    (field, table, dimension) coordinate is first batch-normalised without scale and shift, so that β alone
    carries the dimension's scale. ``beta`` is the only trainable parameter (the ``arch`` family).
    [B, F, E, d] -> [B, F, E, d].
    """

    def __init__(self, num_fields: int, num_tables: int, dim: int) -> None:
        super().__init__()
        self.beta = arch_weights(num_fields, dim)  # [F, d]
        self.norm = nn.BatchNorm1d(num_fields * num_tables * dim, eps=1e-3, affine=False)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        normed = self.norm(emb.flatten(1)).view_as(emb)  # [B, F, E, d]
        return normed * self.beta[:, None, :]  # β_i broadcast over the field's tables


def kept_dimensions(beta: torch.Tensor) -> list[list[int]]:
    """Per field, the positions φ_i = {j : β_ij != 0} in increasing order (eq. 17); their count is d_i (eq. 16)
    and their order defines Map_i: φ_i -> {1..d_i} (eq. 18). [F, d] -> F lists."""
    return [row.nonzero().squeeze(1).tolist() for row in beta.detach()]


class MixedDimEmbedding(nn.Module):
    """The re-train embedding after EDS (§3.4): field i's features have d_i = |φ_i| parameters per table
    (initialised at the shorter size), placed back at their positions φ_i of a common size d with zeros
    elsewhere — Map_i read backwards — for the functions that need equal sizes. The zeros are not parameters.

    All fields' rows live in one flat parameter (table k, then field, then feature, then the d_i values), so
    the lookup is one gather for every field and table. Scalar fields only (ids [B, F]); numeric fields scale
    their row by the value. batch -> [B, F, E, d].

    Args:
        feature_map: the data's fields and vocabularies.
        kept: per field, the kept dimension positions φ_i (strictly increasing, each in [0, d)).
        dim: the common size d.
        num_tables: E, function-wise tables (all with the same kept dimensions per field, as β is shared).
        init_std: rows start at N(0, init_std²).
    """

    def __init__(
        self, feature_map: FeatureMap, kept: list[list[int]], dim: int, num_tables: int, init_std: float
    ) -> None:
        super().__init__()
        if feature_map.bag_fields:
            raise ValueError(f"{feature_map.dataset}: the EDS re-train embedding supports scalar fields only")
        if len(kept) != feature_map.num_fields:
            raise ValueError(f"kept dimensions: {len(kept)} fields given, the data has {feature_map.num_fields}")
        for field, positions in zip(feature_map.fields, kept, strict=True):
            if any(not 0 <= j < dim for j in positions) or sorted(set(positions)) != list(positions):
                raise ValueError(
                    f"kept dimensions of field {field.name!r}: {positions}; allowed: strictly increasing "
                    f"positions in [0, {dim})"
                )
        sizes = torch.tensor([len(p) for p in kept])  # d_i [F]
        vocab = torch.tensor(feature_map.vocab_sizes)  # [F]
        field_rows = vocab * sizes  # parameters per field and table
        self.num_tables, self.dim = num_tables, dim
        table_size = int(field_rows.sum())
        if table_size == 0:
            raise ValueError("kept dimensions: every field has none left; nothing to embed")
        self.weight = nn.Parameter(torch.randn(num_tables * table_size) * init_std)
        self.register_buffer("field_start", torch.cumsum(field_rows, 0) - field_rows, persistent=False)  # [F]
        self.register_buffer("sizes", sizes, persistent=False)  # [F]
        self.register_buffer("table_start", torch.arange(num_tables) * table_size, persistent=False)  # [E]
        source = torch.zeros(len(kept), dim, dtype=torch.long)  # [F, d]: Map_i(j) for j in φ_i
        valid = torch.zeros(len(kept), dim, dtype=torch.bool)  # [F, d]: j in φ_i
        for f, positions in enumerate(kept):
            source[f, positions] = torch.arange(len(positions))
            valid[f, positions] = True
        self.register_buffer("source", source, persistent=False)
        self.register_buffer("valid", valid, persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        row_start = self.field_start + batch["ids"] * self.sizes  # [B, F]
        index = row_start[:, :, None, None] + self.table_start[:, None] + self.source[:, None, :]  # [B, F, E, d]
        valid = self.valid[:, None, :]  # [F, 1, d]
        emb = torch.where(valid, self.weight[torch.where(valid, index, 0)], 0.0)  # [B, F, E, d]
        return emb if "values" not in batch else emb * batch["values"][..., None, None]
