"""The ANOVA kernel of Higher-Order FMs (Blondel et al. 2016, "Higher-Order Factorization Machines",
NeurIPS 2016), per embedding dimension."""

from __future__ import annotations

import torch
from torch import nn


class AnovaKernel(nn.Module):
    """``A^m(v) = sum_{i_1 < ... < i_m} v_{i_1} ⊙ ... ⊙ v_{i_m}``, element-wise over the embedding dimension.

    A^m is the m-th elementary symmetric polynomial of the F vectors. Blondel et al. evaluate it with a
    dynamic programme over the features; that loops over fields, so this block uses the equivalent
    power-sum form (Newton's identities) on ``s_k = sum_i v_i^k``, in O(m^2 F D), vectorised over B, F and D
    and without enumerating the C(F, m) tuples:

        A^0 = 1,   A^t = 1/t * sum_{k=1}^t (-1)^(k+1) A^(t-k) ⊙ s_k.

    For m = 2 this is Rendle's FM identity (``FMInteraction``); for m = 3,
    A^3 = (s_1^3 - 3 s_1 s_2 + 2 s_3) / 6. Summing the output over D gives HOFM's order-m term for one
    embedding table P^(m). Input [B, F, D] -> [B, D].
    """

    def __init__(self, order: int) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"ANOVA kernel order must be >= 1, got {order}")
        self.order = order

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        power_sums = [emb.pow(k).sum(dim=1) for k in range(1, self.order + 1)]  # s_k, each [B, D]
        anova = [torch.ones_like(power_sums[0])]  # A^0 [B, D]
        for t in range(1, self.order + 1):  # over orders (m <= 4 in practice), not over fields
            terms = [(-1) ** (k + 1) * anova[t - k] * power_sums[k - 1] for k in range(1, t + 1)]
            anova.append(torch.stack(terms).sum(dim=0) / t)
        return anova[self.order]  # [B, D]
