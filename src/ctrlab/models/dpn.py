"""Dynamic Parameterized Networks (DPN), feature- and field-based (§2.3-2.4, App. B.3, E, F).

One model, two optional parts, chosen by config:

- **feature part** (``mlp_hidden``): an MLP over x0 = [e_1, ..., e_F] [B, F*D] whose layers listed in
  ``dpo_layers`` (0-based) are feature-based DPOs ``W(z) h + b(z)`` instead of ``W h + b``; every layer is then
  norm (BN on the public sets, none on ML-1M) -> ReLU -> dropout.
- **field part** (``field_layers`` > 0): stacked field-based DPO layers on the field embeddings [B, F, D], each
  ``ReLU(DPO(X, Z) [+ W_f X W_l]) [+ residual]`` to ``field_hidden`` per field (Table 11: hidden 64, residual).

With one part, a linear classifier follows it (the paper's "single model without DNN components"). With both
(Table 14b), ``structure`` joins them: ``stacked`` feeds the flattened field output to the feature part;
``parallel`` runs both on the embeddings and concatenates their outputs before the classifier.

The context z of every DPO (Tables 2b, 13c) is ``context``: ``x0`` (the field embeddings), ``z0`` (a second,
context embedding table of the same fields), or ``prev`` (the layer's own input, x_{l-1}); ``context_fields``
keeps only the named fields of x0 / z0 (MovieLens-tag's tag, ML-1M's Genres / Gender).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.dpo import Aggregation, FeatureDPO, FieldDNN, FieldDPO, GeneratorSpec
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.mlp import Norm

Context = Literal["x0", "z0", "prev"]
Structure = Literal["stacked", "parallel"]


class FeatureDPNBlock(nn.Module):
    """The feature part: [B, in_dim] -> [B, mlp_hidden[-1]], layers in ``dpo_layers`` dynamic."""

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        dpo_layers: list[int],
        context_dim: int | None,
        spec: GeneratorSpec,
        norm: Norm,
        dropout: float,
    ) -> None:
        super().__init__()
        self.linear = nn.ModuleList()
        self.post = nn.ModuleList()  # norm -> ReLU -> dropout after each layer
        for i, h in enumerate(hidden):
            if i in dpo_layers:  # context None: the layer's own input (x_{l-1})
                self.linear.append(FeatureDPO(in_dim, h, in_dim if context_dim is None else context_dim, spec))
            else:
                self.linear.append(nn.Linear(in_dim, h))
            norm_layer = nn.BatchNorm1d(h) if norm == "batch" else nn.LayerNorm(h) if norm == "layer" else nn.Identity()
            self.post.append(nn.Sequential(norm_layer, nn.ReLU(), nn.Dropout(dropout)))
            in_dim = h
        self.out_dim = in_dim

    def forward(self, h: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        for linear, post in zip(self.linear, self.post, strict=True):
            h = post(linear(h, h if z is None else z) if isinstance(linear, FeatureDPO) else linear(h))  # [B, H]
        return h


class FieldDPNLayer(nn.Module):
    """``Y = ReLU(DPO(X, Z) + W_f X W_l) + R X`` ([B, F, m] -> [B, F, c]); either of the first two terms may be
    off, R is the identity when m = c, a learned projection otherwise (as AutoInt's residual), or off."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_fields: int,
        context_shape: tuple[int, int] | None,
        aggregation: Aggregation | None,
        spec: GeneratorSpec,
        field_dnn: bool,
        residual: bool,
    ) -> None:
        super().__init__()
        n_ctx, ctx_dim = (num_fields, in_dim) if context_shape is None else context_shape
        dpo = aggregation is not None
        self.dpo = FieldDPO(in_dim, out_dim, ctx_dim, num_fields, n_ctx, aggregation, spec) if dpo else None
        self.field_dnn = FieldDNN(in_dim, out_dim, num_fields) if field_dnn else None
        if not residual:
            self.residual = None
        else:
            self.residual = nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        y = 0.0
        if self.dpo is not None:
            y = self.dpo(x, x if z is None else z)  # [B, F, c]
        if self.field_dnn is not None:
            y = y + self.field_dnn(x)
        y = torch.relu(y)
        return y if self.residual is None else y + self.residual(x)


class DPN(CTRModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        generator: Mapping[str, Any],
        context: Context,
        context_fields: list[str] | None,
        mlp_hidden: list[int] | None,
        dpo_layers: list[int],
        mlp_norm: Norm,
        mlp_dropout: float,
        field_layers: int,
        field_hidden: int,
        aggregation: Aggregation | None,
        field_dnn: bool,
        residual: bool,
        structure: Structure,
    ) -> None:
        super().__init__()
        spec = GeneratorSpec.from_config(generator)
        if context not in ("x0", "z0", "prev"):
            raise ValueError(f"model.context={context!r}; allowed: x0, z0, prev")
        names = [f.name for f in feature_map.scalar_fields + feature_map.bag_fields]  # FeatureEmbedding's order
        if context_fields is not None:
            if context == "prev":
                raise ValueError("model.context_fields names fields of x0 / z0; model.context=prev has none (set null)")
            unknown = [f for f in context_fields if f not in names]
            if unknown or not context_fields:
                raise ValueError(f"model.context_fields={list(context_fields)}: unknown {unknown}; fields: {names}")
        if mlp_hidden is None and field_layers == 0:
            raise ValueError("a DPN needs model.mlp_hidden (feature part) or model.field_layers > 0 (field part)")
        if mlp_hidden is not None and any(i not in range(len(mlp_hidden)) for i in dpo_layers):
            last = len(mlp_hidden) - 1
            raise ValueError(f"model.dpo_layers={list(dpo_layers)} must index model.mlp_hidden (0..{last})")
        if field_layers > 0 and aggregation is None and not field_dnn:
            raise ValueError("a field layer needs model.aggregation (the DPO) or model.field_dnn=true (or both)")
        if mlp_norm not in ("none", "batch", "layer"):
            raise ValueError(f"model.mlp_norm={mlp_norm!r}; allowed: none, batch, layer")
        if structure not in ("stacked", "parallel"):
            raise ValueError(f"model.structure={structure!r}; allowed: stacked, parallel")
        num_fields = feature_map.num_fields
        self.context = context
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.context_embedding = (
            FeatureEmbedding(feature_map, embedding_dim, embedding_init_std) if context == "z0" else None
        )
        index = [names.index(f) for f in context_fields] if context_fields is not None else list(range(num_fields))
        self.register_buffer("context_index", torch.tensor(index), persistent=False)
        # (context fields, dim) for field DPOs; None: each layer's own input
        field_ctx = None if context == "prev" else (len(index), embedding_dim)

        self.field = nn.ModuleList()
        dim = embedding_dim
        for _ in range(field_layers):
            self.field.append(
                FieldDPNLayer(dim, field_hidden, num_fields, field_ctx, aggregation, spec, field_dnn, residual)
            )
            dim = field_hidden
        field_out = num_fields * dim
        self.stacked = structure == "stacked"
        self.feature = None
        if mlp_hidden is not None:
            in_dim = field_out if field_layers and self.stacked else num_fields * embedding_dim
            ctx_dim = None if field_ctx is None else field_ctx[0] * embedding_dim
            self.feature = FeatureDPNBlock(in_dim, mlp_hidden, dpo_layers, ctx_dim, spec, mlp_norm, mlp_dropout)
        if self.feature is None:
            head = field_out
        elif field_layers and not self.stacked:
            head = field_out + self.feature.out_dim
        else:
            head = self.feature.out_dim
        self.classifier = nn.Linear(head, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # [B, F, D]
        z = None  # context: None is each layer's own input (x_{l-1})
        if self.context != "prev":
            source = emb if self.context_embedding is None else self.context_embedding(batch)
            z = source.index_select(1, self.context_index)  # [B, F_ctx, D]
        x = emb
        for layer in self.field:
            x = layer(x, z)  # [B, F, H]
        if self.feature is None:
            return self.classifier(x.flatten(1)).squeeze(-1)  # [B]
        z_flat = None if z is None else z.flatten(1)  # [B, F_ctx*D]
        if self.field and not self.stacked:
            h = torch.cat([x.flatten(1), self.feature(emb.flatten(1), z_flat)], dim=1)  # parallel
        else:
            h = self.feature(x.flatten(1), z_flat)  # [B, H]; x is emb without field layers
        return self.classifier(h).squeeze(-1)  # [B]
