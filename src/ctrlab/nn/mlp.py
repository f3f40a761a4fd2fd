"""The multi-layer perceptron shared by every deep model."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Norm = Literal["none", "batch", "layer"]
Activation = Literal["relu", "prelu", "dice"]
ACTIVATIONS = ("relu", "prelu", "dice")


class Dice(nn.Module):
    """DIN's data-adaptive activation (Zhou et al. 2018, eq. 9) on [N, dim]:

        f(s) = p(s) * s + (1 - p(s)) * alpha * s,    p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))

    E and Var are the batch's per-unit mean and (biased) variance in training and running estimates at inference,
    as BatchNorm without scale and shift; alpha is learned per unit, from 0 (DIN's released code).
    """

    def __init__(self, dim: int, eps: float = 1e-8, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.alpha = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self.training and s.shape[0] > 1:  # one row has no spread to estimate: use the running values
            mean, var = s.mean(dim=0), s.var(dim=0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((s - mean) / torch.sqrt(var + self.eps))
        return p * s + (1 - p) * self.alpha * s


def activation_layer(name: Activation, dim: int) -> nn.Module:
    """A hidden layer's activation by name: ReLU, PReLU (one slope per unit) or Dice."""
    if name not in ACTIVATIONS:
        raise ValueError(f"mlp activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    return {"relu": nn.ReLU, "prelu": lambda: nn.PReLU(dim), "dice": lambda: Dice(dim)}[name]()


class MLP(nn.Sequential):
    """``in_dim -> hidden[0] -> ... -> hidden[-1] (-> out_dim)``; each hidden layer is
    Linear -> [BatchNorm | LayerNorm] -> activation (ReLU; PReLU or Dice for DIN) -> Dropout. ``out_dim=None``
    ends on the last hidden layer.

    ``norm_after_relu`` moves the norm behind the activation, Linear -> ReLU -> norm (OptInter eq. 9,
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
        activation: Activation = "relu",
    ) -> None:
        if norm not in ("none", "batch", "layer"):
            raise ValueError(f"mlp norm must be one of none, batch, layer; got {norm!r}")
        layers: list[nn.Module] = []
        for h in hidden:
            layers.append(nn.Linear(in_dim, h))
            normed = {"none": [], "batch": [nn.BatchNorm1d(h)], "layer": [nn.LayerNorm(h)]}[norm]
            act = activation_layer(activation, h)
            layers.extend([act, *normed] if norm_after_relu else [*normed, act])
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
