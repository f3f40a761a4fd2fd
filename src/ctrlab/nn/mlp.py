"""The multi-layer perceptron shared by every deep model."""

from __future__ import annotations

from typing import Literal

from torch import nn

Norm = Literal["none", "batch", "layer"]


class MLP(nn.Sequential):
    """``in_dim -> hidden[0] -> ... -> hidden[-1] (-> out_dim)``; each hidden layer is
    Linear -> [BatchNorm | LayerNorm] -> ReLU -> Dropout. ``out_dim=None`` ends on the last hidden layer.

    ``norm_after_relu`` moves the norm behind the ReLU, Linear -> ReLU -> norm (OptInter eq. 9,
    ``a^{l+1} = LN(relu(W a^l + b))``); ``xavier`` draws every Linear weight Xavier-uniform (OptInter §III-A4,
    PIN), biases keep PyTorch's default.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        out_dim: int | None = 1,
        dropout: float = 0.0,
        norm: Norm = "none",
        norm_after_relu: bool = False,
        xavier: bool = False,
    ) -> None:
        if norm not in ("none", "batch", "layer"):
            raise ValueError(f"mlp norm must be one of none, batch, layer; got {norm!r}")
        layers: list[nn.Module] = []
        for h in hidden:
            layers.append(nn.Linear(in_dim, h))
            normed = {"none": [], "batch": [nn.BatchNorm1d(h)], "layer": [nn.LayerNorm(h)]}[norm]
            layers.extend([nn.ReLU(), *normed] if norm_after_relu else [*normed, nn.ReLU()])
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = h
        if out_dim is not None:
            layers.append(nn.Linear(in_dim, out_dim))
        super().__init__(*layers)
        self.out_dim = out_dim if out_dim is not None else in_dim
        if xavier:
            for layer in self:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
