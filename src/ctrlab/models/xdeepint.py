"""xDeepInt (Yan & Li 2020), as DynInt §3 describes it: embedding -> L PIN layers (eq. 3) with the
subspace-crossing mechanism -> the output layer of eq. 2. No DNN, no separate linear term: the residual
connections keep X0 in X_L, so eq. 2's aggregation already holds the first-order part.

``PINModel`` is the skeleton that xDeepInt and the three DynInt variants (``ctrlab.models.dynint``) share;
they differ only in their layers.

Output layer (``output_layer``). ``paper`` (default): eq. 2 as printed, W_out ∈ R^{1×F}, on X_L with the
sub-spaces merged back, each field's h chunks concatenated into its D-dim vector ([B, F*h, D/h] ->
[B, F, D]) - what the authors' released xDeepInt code does before its output layer. ``per_subspace``:
eq. 2 on the split map, one weight per (field, chunk) row (W_out ∈ R^{1×F*h}), a generalisation that
unties the h chunk weights of a field. For h = 1 the two are the same.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.polynomial import PINOutput, PolynomialInteraction, split_subspaces

OutputLayer = Literal["paper", "per_subspace"]
OUTPUT_LAYERS = ("paper", "per_subspace")


class PINModel(CTRModel):
    """Embedding [B, F, D] -> subspace-crossed X0 [B, F*h, D/h] -> ``self.layers`` -> eq. 2 -> logits [B].

    Subclasses set ``self.layers``: modules called as ``layer(x, x0) -> x``. ``num_layers = 0`` leaves
    ``sum_f w_f sum_d x_f,d + b``, a logistic regression (DynInt Table 3, "#Layers = 0").
    ``output_layer``: ``paper`` or ``per_subspace`` (module docstring).
    """

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        num_subspaces: int,
        output_layer: OutputLayer,
    ) -> None:
        super().__init__()
        if embedding_dim % num_subspaces:
            raise ValueError(f"embedding_dim {embedding_dim} is not divisible by num_subspaces {num_subspaces}")
        if output_layer not in OUTPUT_LAYERS:
            raise ValueError(f"model.output_layer = {output_layer!r} is not one of {list(OUTPUT_LAYERS)}")
        self.num_subspaces = num_subspaces
        self.num_rows = feature_map.num_fields * num_subspaces  # F' = F*h
        self.input_dim = feature_map.num_fields * embedding_dim  # the generators' input width, F*D
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.layers = nn.ModuleList()
        self.output = PINOutput(feature_map.num_fields if output_layer == "paper" else self.num_rows)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0 = split_subspaces(self.embedding(batch), self.num_subspaces)  # [B, F', D']
        x = x0
        for layer in self.layers:
            x = layer(x, x0)  # [B, F', D']
        return self.head(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer on the last PIN layer's rows [B, F', D'] -> logits [B]."""
        # rows are field-major (row f*h + s = chunk s of field f), so viewing them as [B, F, D] concatenates each
        # field's chunks back into its vector (paper); as [B, F*h, D/h] it changes nothing (per_subspace)
        return self.output(x.reshape(x.shape[0], self.output.num_rows, -1))  # [B]


class XDeepInt(PINModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        num_layers: int,
        num_subspaces: int,
        output_layer: OutputLayer,
    ) -> None:
        super().__init__(feature_map, embedding_dim, embedding_init_std, num_subspaces, output_layer)
        self.layers.extend(PolynomialInteraction(self.num_rows) for _ in range(num_layers))
