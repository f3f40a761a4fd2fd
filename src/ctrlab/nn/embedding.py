"""Embedding lookups over the shared id space: one table, per-field offsets (docs/architecture.md, batch contract)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctrlab.data.schema import FeatureMap


class FeatureEmbedding(nn.Module):
    """Maps a batch to field embeddings [B, F, D], one per field of the feature map.

    Scalar fields look up their id (``ids`` [B, F_scalar]); numeric ones scale their single row by the
    field's value (OptInter's recipe; ``values`` [B, F_scalar], 1.0 for categorical fields). Multi-valued and
    sequence fields (``bag_ids`` [B, F_bag, L]) are mean-pooled over their non-padding ids and appended, so
    every model sees F = F_scalar + F_bag field embeddings; an empty bag pools to zeros. Models that attend
    over a sequence take ``bag_embeddings``. Rows start at N(0, init_std^2). ``table.sparse`` (set by
    ``optimizer.sparse_embedding``, lit/module.py) makes every lookup's gradient sparse: the looked-up rows only.
    """

    def __init__(self, feature_map: FeatureMap, dim: int, init_std: float) -> None:
        super().__init__()
        self.num_scalar = len(feature_map.scalar_fields)
        self.has_bags = bool(feature_map.bag_fields)
        # bags point their padding at one extra row that embedding_bag leaves out of the mean
        self.pad_row = feature_map.total_vocab
        self.table = nn.Embedding(feature_map.total_vocab + int(self.has_bags), dim)
        nn.init.normal_(self.table.weight, std=init_std)
        offsets = torch.as_tensor(feature_map.offsets)
        self.register_buffer("offsets", offsets[: self.num_scalar], persistent=False)  # [F_scalar]
        self.register_buffer("bag_offsets", offsets[self.num_scalar :, None], persistent=False)  # [F_bag, 1]

    def _bag_rows(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        bags = batch["bag_ids"]  # [B, F_bag, L]
        return torch.where(bags > 0, bags + self.bag_offsets, self.pad_row)  # [B, F_bag, L]

    def bag_embeddings(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-position embeddings of the bag fields, zero at padding. [B, F_bag, L, D]"""
        bags = batch["bag_ids"]
        return self.table(self._bag_rows(batch)) * (bags > 0).unsqueeze(-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.table(batch["ids"] + self.offsets)  # [B, F_scalar, D]
        if "values" in batch:
            emb = emb * batch["values"].unsqueeze(-1)
        if self.has_bags:
            rows = self._bag_rows(batch)  # [B, F_bag, L]
            pooled = F.embedding_bag(
                rows.flatten(0, 1), self.table.weight, mode="mean", padding_idx=self.pad_row, sparse=self.table.sparse
            )  # [B * F_bag, D]
            emb = torch.cat([emb, pooled.view(*rows.shape[:2], -1)], dim=1)  # [B, F, D]
        return emb


class CrossEmbedding(nn.Module):
    """Embeddings of the memorized cross-product features (``cross_ids`` [B, P]) -> [B, P, D].

    One table over every cross's own vocabulary (``FeatureMap.cross_fields``), as Poly2's weights (D = 1) or
    OptInter's memorized interactions. ``crosses`` (indices into ``cross_fields``) keeps only those crosses'
    rows and columns, [B, P_kept, D]: OptInter memorizes some pairs, and the table is its largest parameter.
    ``sparse`` makes the table's gradient sparse (the looked-up rows only; needs a sparse-aware optimizer).
    """

    def __init__(
        self,
        feature_map: FeatureMap,
        dim: int,
        init_std: float,
        crosses: list[int] | None = None,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        if not feature_map.cross_fields:
            raise ValueError(
                f"{feature_map.dataset}: this model needs cross-product features; "
                "set data.crosses.enabled=true (the `crosses:` block of every configs/data/*.yaml)"
            )
        kept = list(range(len(feature_map.cross_fields))) if crosses is None else list(crosses)
        sizes = [feature_map.cross_fields[c].vocab_size for c in kept]
        self.table = nn.Embedding(int(sum(sizes)), dim, sparse=sparse)
        nn.init.normal_(self.table.weight, std=init_std)
        sizes_t = torch.as_tensor(sizes, dtype=torch.long)
        offsets = sizes_t.cumsum(0) - sizes_t  # each kept cross's first row
        self.register_buffer("offsets", offsets, persistent=False)  # [P_kept]
        self.register_buffer("columns", torch.as_tensor(kept, dtype=torch.long), persistent=False)  # [P_kept]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.table(batch["cross_ids"][:, self.columns] + self.offsets)  # [B, P_kept, D]


class LinearTerm(nn.Module):
    """The first-order part of LR / FM / Wide&Deep: ``b + sum_f w[x_f] * value_f``. Returns [B]."""

    def __init__(self, feature_map: FeatureMap) -> None:
        super().__init__()
        self.weights = FeatureEmbedding(feature_map, dim=1, init_std=0.0)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.weights(batch).sum(dim=(1, 2)) + self.bias  # [B]
