"""DynInt's instance-aware PIN layers (Yan & Li 2022, §3.2-3.6): dynamic activation (eq. 4), dynamic generated
parameters (eqs. 5, 7, 8) and dynamic weighted parameters (eqs. 6, 9, 10), plus the orthogonal penalties of
eqs. 11-12. All work on the subspace-crossed map of ``ctrlab.nn.polynomial`` ([B, F', D'], F' = F*h,
D' = D/h), as the paper says its implementation does.

Shared choices (the paper leaves them open):

- Every generator is a "two-layer DNN with reduction ratio r": Linear(F*D -> F*D // r) -> ReLU ->
  Linear(-> out). Its input is the whole flattened embedding map X0 (F*D values; the same numbers as the
  subspace-crossed map), **detached** so that X0 gets no gradient from the generators (§3.2, §3.5.1).
- Zero-mean initialisation (PyTorch's default for the weights) and a zero output bias, so with the small
  initial embeddings every generator starts at its stated neutral point (gates ≈ 1, Σ ≈ I, G ≈ 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ctrlab.nn.polynomial import PolynomialInteraction, init_interaction_matrix


class GeneratorNetwork(nn.Sequential):
    """Two-layer DNN with reduction ratio r (§3.2): ``in_dim -> max(1, in_dim // r) -> out_dim``, ReLU between.

    The hidden width follows Squeeze-and-Excitation's reduction ratio applied to the input width (F*D).
    """

    def __init__(self, in_dim: int, out_dim: int, reduction_ratio: int) -> None:
        hidden = max(1, in_dim // reduction_ratio)
        super().__init__(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        nn.init.zeros_(self[2].bias)  # output at init = W2 relu(b1 + O(X0)): zero-mean, small

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return super().forward(x0.detach().flatten(1))  # stop-gradient X0: [B, F*D] -> [B, out]


def pairwise_abs_cosine(vectors: torch.Tensor) -> torch.Tensor:
    """``sum_{p>q} |cos(v_p, v_q)|`` over the K vectors of the second-last axis: [..., K, N] -> [...]."""
    unit = F.normalize(vectors, dim=-1)  # [..., K, N]
    cos = unit @ unit.transpose(-1, -2)  # [..., K, K]
    k = vectors.shape[-2]
    upper = torch.ones(k, k, dtype=torch.bool, device=vectors.device).triu(1)  # the pairs p < q, once each
    return (cos.abs() * upper).sum(dim=(-1, -2))


class DynamicActivationGate(nn.Module):
    """The instance-aware gate G_l^(i) of DynInt-DA (eq. 4): ``2 * sigmoid(DNN(stop_grad(X0)))``.

    Shape: one gate per row of the subspace-crossed map, [B, F', 1], broadcast over the D/h columns. The
    paper calls G a "gating vector" multiplying the layer output, so we gate rows (fields, or field sub-space
    chunks when h > 1) rather than every entry of [F', D']; with h = D this is a per-(field, bit) gate anyway.
    ``2 * sigmoid`` with zero-mean init makes the gates start around 1.0 (§3.2), so DA starts as xDeepInt.
    """

    def __init__(self, in_dim: int, num_rows: int, reduction_ratio: int) -> None:
        super().__init__()
        self.net = GeneratorNetwork(in_dim, num_rows, reduction_ratio)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return (2.0 * torch.sigmoid(self.net(x0))).unsqueeze(-1)  # [B, F', 1]


class DynamicActivationPIN(nn.Module):
    """PIN layer with dynamic activation (eq. 4, Fig. 3): X_l = (X_{l-1} ∘ (W X0)) ∘ G^(i) + X_{l-1}."""

    def __init__(self, num_rows: int, in_dim: int, reduction_ratio: int) -> None:
        super().__init__()
        self.pin = PolynomialInteraction(num_rows)
        self.gate = DynamicActivationGate(in_dim, num_rows, reduction_ratio)

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return self.pin(x, x0, gate=self.gate(x0))


class DynamicGeneratedPIN(nn.Module):
    """PIN layer with dynamic generated parameters, DynInt-DGP (eqs. 5, 7, 8):

        X_l = X_{l-1} ∘ (W^(i) X0) + X_{l-1},   W^(i) = U Σ^(i) V^T,   U, V ∈ R^{F'×K} static,

    where the K diagonal entries of Σ^(i) come from a generator over stop-grad X0. Computed right to left,
    U (Σ^(i) (V^T X0)), so only [B, K, D'] and [B, F', D'] tensors exist — never a [B, F', F'] W^(i).

    Choices: Σ^(i) = 2 * sigmoid(DNN) — the paper does not state the activation; this keeps the singular values
    positive and starts Σ at ≈ I (W^(i) ≈ U V^T, a static rank-K PIN), in the spirit of DA's gate. U and V
    start orthogonal (``nn.init.orthogonal_``: orthonormal columns when K <= F'), where the penalty of
    eq. 11 is zero.
    """

    def __init__(self, num_rows: int, in_dim: int, kernel_size: int, reduction_ratio: int) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.empty(num_rows, kernel_size))  # U: [F', K]
        self.v = nn.Parameter(torch.empty(num_rows, kernel_size))  # V: [F', K]
        nn.init.orthogonal_(self.u)
        nn.init.orthogonal_(self.v)
        self.sigma_net = GeneratorNetwork(in_dim, kernel_size, reduction_ratio)

    def singular_values(self, x0: torch.Tensor) -> torch.Tensor:
        """The diagonal of Σ^(i): [B, K]."""
        return 2.0 * torch.sigmoid(self.sigma_net(x0))

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        sigma = self.singular_values(x0)  # [B, K]
        proj = torch.einsum("fk,bfd->bkd", self.v, x0)  # V^T X0: [B, K, D']
        mixed = torch.einsum("fk,bkd->bfd", self.u, sigma.unsqueeze(-1) * proj)  # U Σ V^T X0: [B, F', D']
        return x * mixed + x

    def orthogonal_penalty(self) -> torch.Tensor:
        """Eq. 11 for one layer: sum_{p>q} |cos(u_p, u_q)| + |cos(v_p, v_q)| over the static columns."""
        return pairwise_abs_cosine(self.u.t()) + pairwise_abs_cosine(self.v.t())


class DynamicWeightedPIN(nn.Module):
    """PIN layer with dynamic weighted parameters, DynInt-DWP (eqs. 6, 9, 10):

        X_l = X_{l-1} ∘ ((G^(i) ∘ W) X0) + X_{l-1},   G^(i) = sum_p u_p^(i) v_p^(i)T  (rank K),

    with W ∈ R^{F'×F'} static and the K pairs (u_p, v_p) ∈ R^{F'} from a generator over stop-grad X0.
    Eq. 10's vectorised form: (u v^T ∘ W) X0 = diag(u) W diag(v) X0 = u ⊙ (W (v ⊙ X0)), so the layer holds
    [B, K, F', D'] tensors (B*K*F*D numbers) and never a [B, F', F'] G^(i).

    Initialisation (§3.5.2: "add 1.0/K to the output of the DNN ... so that the entries of G are around
    1.0"): adding 1/K to every entry of u and v would give G ≈ K * (1/K)^2 = 1/K, not 1, for K > 1. We read
    the 1/K as each pair's share of G and add 1/sqrt(K) to u and to v, so every u_p v_p^T starts at ≈ 1/K and
    G^(i) at ≈ 1 (identical to the literal reading for K = 1): DWP starts as xDeepInt.

    The layer keeps no state between calls: a model that needs (u, v) for eq. 12's penalty calls ``factors``
    and ``weighted`` itself and hands the factors on (``DynIntDWP.forward_train``).
    """

    def __init__(self, num_rows: int, in_dim: int, rank: int, reduction_ratio: int) -> None:
        super().__init__()
        self.rank = rank
        self.num_rows = num_rows
        self.weight = nn.Parameter(torch.empty(num_rows, num_rows))  # W: [F', F']
        init_interaction_matrix(self.weight)
        self.factor_net = GeneratorNetwork(in_dim, 2 * rank * num_rows, reduction_ratio)

    def factors(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, v), each [B, K, F']: row p is u_p^(i) (resp. v_p^(i)) of eq. 9."""
        out = self.factor_net(x0).view(-1, 2, self.rank, self.num_rows) + 1.0 / math.sqrt(self.rank)
        return out[:, 0], out[:, 1]

    def weighted(self, x: torch.Tensor, x0: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Eq. 6 with G^(i) given by its factors (u, v) [B, K, F']: X_{l-1} ∘ ((G^(i) ∘ W) X0) + X_{l-1}."""
        scaled = v.unsqueeze(-1) * x0.unsqueeze(1)  # diag(v_p) X0: [B, K, F', D']
        weighted = torch.matmul(self.weight, scaled)  # W diag(v_p) X0: [B, K, F', D']
        mixed = (u.unsqueeze(-1) * weighted).sum(dim=1)  # sum_p diag(u_p) W diag(v_p) X0: [B, F', D']
        return x * mixed + x

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return self.weighted(x, x0, *self.factors(x0))

    @staticmethod
    def orthogonal_penalty(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Eq. 12's summand for one layer, per instance: sum_{p>q} |cos(u_p, u_q)| + |cos(v_p, v_q)|. [B]"""
        return pairwise_abs_cosine(u) + pairwise_abs_cosine(v)
