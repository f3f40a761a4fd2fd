"""The architecture gate of AutoFIS / AIM (AIM eqs. 12-14 with eq. 20): one weight per candidate, applied after a
batch normalisation without scale and shift."""

from __future__ import annotations

import torch
from torch import nn

# AutoFIS / AIM start every α (and EDS's β) at 0.6 ± 0.001 (the released scripts' ``weight_base``): equal weights,
# the jitter only breaks ties when candidates are ranked by |α| (Algorithm 1's top-k).
ARCH_INIT = 0.6
ARCH_INIT_JITTER = 1e-3


def arch_weights(*shape: int) -> nn.Parameter:
    """Architecture weights of the given shape, uniform in ARCH_INIT ± ARCH_INIT_JITTER."""
    return nn.Parameter(torch.empty(*shape).uniform_(ARCH_INIT - ARCH_INIT_JITTER, ARCH_INIT + ARCH_INIT_JITTER))


class InteractionGate(nn.Module):
    """``α_g · BN(z_g)`` for G candidates: FIS (eq. 12; G = interactions) or IFS (eqs. 13-14; G = interaction x
    function slots), with eq. 20's normalisation.

    BN has its scale θ = 1 and shift δ = 0 fixed (``affine=False``, eq. 20), so α alone carries a candidate's
    weight: with a learned scale, α / η · (η z) would give the same output for any η and α would not measure
    importance (§3.6). ε = 1e-3 is TensorFlow's default, which the authors' code uses. The only trainable
    parameter is ``alpha`` (the ``arch`` family), whose zeros after GRDA close the gates. [B, G] -> [B, G].
    """

    def __init__(self, num_gates: int) -> None:
        super().__init__()
        self.alpha = arch_weights(num_gates)  # [G]
        self.norm = nn.BatchNorm1d(num_gates, eps=1e-3, affine=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.norm(z)  # [B, G]
