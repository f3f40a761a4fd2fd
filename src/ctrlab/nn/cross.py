"""Cross networks: DCN's cross layer (Wang et al. 2017) and DCN V2's family (Wang et al. 2021).

Every cross network maps the flattened embeddings ``x_0`` [B, d] to ``x_L`` [B, d]; each layer keeps ``x_l``
through a residual connection and multiplies ``x_0`` in, so layer ``l`` holds interactions up to order l+1.

- ``v1``        DCN eq. (3):  ``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l``
- ``full``      DCN V2 eq. (1): ``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l``
- ``low_rank``  DCN V2 "cost-effective mixture of low-rank DCN": ``W_l = U_l V_l^T``
- ``mixture``   DCN V2, same section (mixture of low-rank experts, "DCN-Mix"; DPN Table 1 CrossMix):
                ``x_{l+1} = sum_k G_k(x_l) E_k(x_l) + x_l``,
                ``E_k(x_l) = x_0 ⊙ (U_k g(C_k g(V_k^T x_l)) + b_l)``,
                ``G(x_l) = softmax(W_g x_l)`` over the K experts.

With a softmax gate the gates sum to one, so the mixture equals ``x_0 ⊙ (sum_k G_k U_k g(C_k g(V_k^T x_l))
+ b_l) + x_l``: every DCN V2 variant is one ``CrossLayerV2`` around a different projection of ``x_l``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

CrossType = Literal["v1", "full", "low_rank", "mixture"]
Activation = Literal["tanh", "relu", "identity"]
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "identity": nn.Identity}


class CrossNetworkV1(nn.Module):
    """DCN eq. (3), ``num_layers`` times: ``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l``. [B, d] -> [B, d]"""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_layers, dim) * dim**-0.5)  # w_l, one row per layer
        self.bias = nn.Parameter(torch.zeros(num_layers, dim))  # b_l

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0  # [B, d]
        for w, b in zip(self.weight, self.bias, strict=True):
            x = x0 * (x @ w).unsqueeze(-1) + b + x  # x_l^T w_l is a scalar per example: [B, 1]
        return x


class FullRank(nn.Module):
    """``W x`` with a full d x d matrix (DCN V2 eq. 1). [B, d] -> [B, d]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight(x)


class LowRank(nn.Module):
    """``U (V^T x)`` with U, V in R^{d x r} (DCN V2, low-rank DCN). [B, d] -> [B, d]."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.v = nn.Linear(dim, rank, bias=False)  # V^T
        self.u = nn.Linear(rank, dim, bias=False)  # U

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.u(self.v(x))


class LowRankMixture(nn.Module):
    """``sum_k G_k(x) U_k g(C_k g(V_k^T x))``, ``G(x) = softmax(W_g x)`` over K experts (DCN V2, DCN-Mix).

    U_k, V_k in R^{d x r}, C_k in R^{r x r}; all experts run in one batched contraction. [B, d] -> [B, d].
    """

    def __init__(self, dim: int, rank: int, num_experts: int, activation: Activation) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"expert activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}")
        self.v = nn.Parameter(torch.randn(num_experts, dim, rank) * dim**-0.5)  # V_k
        self.c = nn.Parameter(torch.randn(num_experts, rank, rank) * rank**-0.5)  # C_k
        self.u = nn.Parameter(torch.randn(num_experts, dim, rank) * rank**-0.5)  # U_k
        self.gate = nn.Linear(dim, num_experts, bias=False)  # W_g
        self.g = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.g(torch.einsum("bd,kdr->bkr", x, self.v))  # g(V_k^T x): [B, K, r]
        h = self.g(torch.einsum("bkr,kqr->bkq", h, self.c))  # g(C_k h): [B, K, r]
        experts = torch.einsum("bkr,kdr->bkd", h, self.u)  # U_k h: [B, K, d]
        gates = torch.softmax(self.gate(x), dim=-1)  # G(x): [B, K]
        return torch.einsum("bk,bkd->bd", gates, experts)  # [B, d]


class CrossLayerV2(nn.Module):
    """``x_{l+1} = x_0 ⊙ (P(x_l) + b_l) + x_l``, P full, low-rank or mixture. [B, d] -> [B, d]"""

    def __init__(self, projection: nn.Module, dim: int) -> None:
        super().__init__()
        self.projection = projection
        self.bias = nn.Parameter(torch.zeros(dim))  # b_l

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * (self.projection(x) + self.bias) + x  # [B, d]


class CrossNetworkV2(nn.Module):
    """``num_layers`` DCN V2 cross layers, each with its own projection. [B, d] -> [B, d]."""

    def __init__(self, layers: list[CrossLayerV2]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0  # [B, d]
        for layer in self.layers:
            x = layer(x0, x)
        return x


def cross_network(
    kind: CrossType,
    dim: int,
    num_layers: int,
    rank: int | None,
    num_experts: int | None,
    activation: Activation | None,
) -> nn.Module:
    """The cross network named by ``kind``; ``rank`` is for low_rank / mixture, ``num_experts`` and
    ``activation`` (g) for mixture only; arguments a kind does not use must be None."""
    used = {"v1": set(), "full": set(), "low_rank": {"rank"}, "mixture": {"rank", "num_experts", "activation"}}
    if kind not in used:
        raise ValueError(f"cross type must be one of {sorted(used)}; got {kind!r}")
    args = dict(rank=rank, num_experts=num_experts, activation=activation)
    given = {k for k, v in args.items() if v is not None}
    if given != used[kind]:
        raise ValueError(
            f"cross type {kind!r} takes {sorted(used[kind]) or 'no'} of rank / num_experts / "
            f"activation; got {sorted(given) or 'none'}"
        )
    if kind == "v1":
        return CrossNetworkV1(dim, num_layers)

    def projection() -> nn.Module:
        if kind == "full":
            return FullRank(dim)
        if kind == "low_rank":
            return LowRank(dim, rank)
        return LowRankMixture(dim, rank, num_experts, activation)

    return CrossNetworkV2([CrossLayerV2(projection(), dim) for _ in range(num_layers)])
