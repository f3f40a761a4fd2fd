"""AFN's Logarithmic Transformation Layer (Cheng et al. 2020: "Logarithmic Transformation Layer")."""

from __future__ import annotations

import torch
from torch import nn


class LogarithmicTransform(nn.Module):
    """N logarithmic neurons over the field embeddings [B, F, D] -> [B, N, D] (element-wise in d):

        y_j = exp(sum_i w_ij ln|e_i|) = prod_i |e_i|^{w_ij}

    so neuron j learns a cross feature of adaptive (real-valued) order ``w_j``. ``|e|`` is clamped below at
    ``min_abs`` so the log stays finite. With ``batch_norm`` the log-embeddings are batch-normalised per field
    before the weighting and the neuron outputs per neuron after the exp, as the authors' code does to keep
    exp from overflowing. ``w`` starts at N(0, 0.1^2) (authors' code).
    """

    def __init__(self, num_fields: int, num_neurons: int, min_abs: float, batch_norm: bool) -> None:
        super().__init__()
        self.min_abs = min_abs
        self.weight = nn.Parameter(torch.randn(num_neurons, num_fields) * 0.1)  # w_ij: [N, F]
        self.log_norm = nn.BatchNorm1d(num_fields) if batch_norm else nn.Identity()
        self.exp_norm = nn.BatchNorm1d(num_neurons) if batch_norm else nn.Identity()

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        log_e = self.log_norm(torch.log(e.abs().clamp_min(self.min_abs)))  # ln|e_i|: [B, F, D]
        y = torch.exp(torch.einsum("nf,bfd->bnd", self.weight, log_e))  # [B, N, D]
        return self.exp_norm(y)
