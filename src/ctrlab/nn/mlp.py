"""The multi-layer perceptron shared by every deep model."""

from __future__ import annotations

from typing import Literal

from torch import nn

Norm = Literal["none", "batch", "layer"]


class MLP(nn.Sequential):
    """``in_dim -> hidden[0] -> ... -> hidden[-1] (-> out_dim)``; each hidden layer is
    Linear -> [BatchNorm | LayerNorm] -> ReLU -> Dropout. ``out_dim=None`` ends on the last hidden layer."""

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        out_dim: int | None = 1,
        dropout: float = 0.0,
        norm: Norm = "none",
    ) -> None:
        if norm not in ("none", "batch", "layer"):
            raise ValueError(f"mlp norm must be one of none, batch, layer; got {norm!r}")
        layers: list[nn.Module] = []
        for h in hidden:
            layers.append(nn.Linear(in_dim, h))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(h))
            elif norm == "layer":
                layers.append(nn.LayerNorm(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = h
        if out_dim is not None:
            layers.append(nn.Linear(in_dim, out_dim))
        super().__init__(*layers)
        self.out_dim = out_dim if out_dim is not None else in_dim
