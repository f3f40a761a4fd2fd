"""DynInt (Yan & Li 2022): xDeepInt's PIN made instance-aware, in three variants (§3.2-3.6).

- ``DynIntDA``: dynamic activation, a gate per layer (eq. 4).
- ``DynIntDGP``: dynamic generated parameters W^(i) = U Σ^(i) V^T (eqs. 5, 7, 8) + orthogonal penalty (eq. 11).
- ``DynIntDWP``: dynamic weighted parameters (G^(i) ∘ W), G^(i) of rank K (eqs. 6, 9, 10) + penalty (eq. 12).

All share xDeepInt's embedding, subspace-crossing and output layer (``PINModel``, with its ``output_layer``).

Orthogonal penalty scaling: eqs. 11-12 sum over the N training instances next to a log loss that is also a
sum. Our loss is a batch mean (``CTRModule``), so ``regularization()`` returns the per-instance penalty,
named ``orthogonal``: ``ortho_lambda * sum_l sum_{p>q} (|cos(u_p, u_q)| + |cos(v_p, v_q)|)`` — for DGP over
the static columns of U_l, V_l (no dependence on the instance, so the sum over i is N copies of it), for DWP
averaged over the batch, from the factors that ``forward_train`` returns. ``ortho_lambda`` is thus λ of
eqs. 11-12 with the same meaning.
"""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import ModelOutput
from ctrlab.models.xdeepint import OutputLayer, PINModel
from ctrlab.nn.dynamic import DynamicActivationPIN, DynamicGeneratedPIN, DynamicWeightedPIN
from ctrlab.nn.polynomial import split_subspaces


class DynIntDA(PINModel):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        num_layers: int,
        num_subspaces: int,
        output_layer: OutputLayer,
        reduction_ratio: int,
    ) -> None:
        super().__init__(feature_map, embedding_dim, embedding_init_std, num_subspaces, output_layer)
        self.layers.extend(
            DynamicActivationPIN(self.num_rows, self.input_dim, reduction_ratio) for _ in range(num_layers)
        )


class _OrthogonalPIN(PINModel):
    """A PIN model with eqs. 11-12's penalty: ``{"orthogonal": ortho_lambda * sum_l penalty_l}``."""

    ortho_lambda: float

    def layer_penalties(self, output: ModelOutput) -> list[torch.Tensor]:
        """penalty_l per layer, scalars (per instance: see the module docstring)."""
        raise NotImplementedError

    def regularization(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        if self.ortho_lambda == 0 or len(self.layers) == 0:
            return {}
        return {"orthogonal": self.ortho_lambda * torch.stack(self.layer_penalties(output)).sum()}


class DynIntDGP(_OrthogonalPIN):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        num_layers: int,
        num_subspaces: int,
        output_layer: OutputLayer,
        reduction_ratio: int,
        kernel_size: int,
        ortho_lambda: float,
    ) -> None:
        super().__init__(feature_map, embedding_dim, embedding_init_std, num_subspaces, output_layer)
        self.ortho_lambda = ortho_lambda
        self.layers.extend(
            DynamicGeneratedPIN(self.num_rows, self.input_dim, kernel_size, reduction_ratio) for _ in range(num_layers)
        )

    def layer_penalties(self, output: ModelOutput) -> list[torch.Tensor]:
        """Eq. 11 per layer, over the static columns of U_l, V_l."""
        return [layer.orthogonal_penalty() for layer in self.layers]


class DynIntDWP(_OrthogonalPIN):
    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        num_layers: int,
        num_subspaces: int,
        output_layer: OutputLayer,
        reduction_ratio: int,
        rank: int,
        ortho_lambda: float,
    ) -> None:
        super().__init__(feature_map, embedding_dim, embedding_init_std, num_subspaces, output_layer)
        self.ortho_lambda = ortho_lambda
        self.layers.extend(
            DynamicWeightedPIN(self.num_rows, self.input_dim, rank, reduction_ratio) for _ in range(num_layers)
        )

    def forward_train(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        """``PINModel.forward``, keeping each layer's (u, v) [B, K, F'] as ``aux["u<l>"]``, ``aux["v<l>"]`` for
        eq. 12, so they are generated once per step (tests/test_module.py checks it against ``forward``)."""
        x0 = split_subspaces(self.embedding(batch), self.num_subspaces)  # [B, F', D']
        x, aux = x0, {}
        for i, layer in enumerate(self.layers):
            u, v = layer.factors(x0)  # [B, K, F'] each
            x = layer.weighted(x, x0, u, v)  # [B, F', D']
            aux[f"u{i}"], aux[f"v{i}"] = u, v
        return ModelOutput(self.head(x), aux)

    def layer_penalties(self, output: ModelOutput) -> list[torch.Tensor]:
        """Eq. 12 per layer, averaged over the instances of this step's forward."""
        return [
            DynamicWeightedPIN.orthogonal_penalty(output.aux[f"u{i}"], output.aux[f"v{i}"]).mean()
            for i in range(len(self.layers))
        ]
