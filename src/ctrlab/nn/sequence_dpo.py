"""Sequence-based DPO (DPN §2.5, appendix D): behaviour-behaviour (homogeneous) and query-behaviour (heterogeneous).

Both reuse ``nn/dpo.py``'s weight generators ``g`` (``GeneratorSpec``). The context of both is the behaviour
sequence's global summary, the masked mean over the real behaviours (C(z) of eq. 3 = the history's length):

    z̄ = 1/C sum_{j real} z_j                                                        [B, n]

Appendix D recommends generating from this summary ("learn the relation of the embedding representing the whole
behaviour sequence") rather than averaging per-behaviour weights; the two agree for a linear ``g``
(``hyperdense``: eq. 10 / 12 without σ) and the summary is what lets ``g`` be an SE layer (``mok`` with sigmoid
gates: s = σ(W_1^T z̄ + b_1) in R^d, W = sum_k s_k W_2,k, eq. 7 / 11).

Padding (``mask`` [B, L] False) never reaches an output: padded behaviours are zeroed before the mean and before
the convolution reads its neighbours, and the homogeneous output is zero at padded positions.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.dpo import FeatureDPO, GeneratorSpec, weight_generator
from ctrlab.nn.target_attention import zero_padding


def masked_mean(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1/C sum over the real positions of z [B, L, n] -> [B, n]; an empty history gives zeros."""
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(z.dtype)  # [B, 1]
    return zero_padding(z, mask).sum(dim=1) / count


class HomogeneousDPO(nn.Module):
    """Behaviour-behaviour DPO (eqs. 6-7, 11): a depth-wise (c = 1) 1-D convolution of kernel size k over the
    behaviours whose kernel is generated from the whole sequence,

        y_i = sum_{l=-⌊k/2⌋}^{⌊k/2⌋} W_l(z̄) ⊙ x_{i+l} + b(z̄),     [W_0(z̄) .. W_{k-1}(z̄)] = W(z̄) in R^{n x k}

    i.e. the generator ``g`` of a linear map from a channel's window (k values) to the n channels, of which the
    convolution uses the diagonal per channel: W(z̄)[ch, l] is channel ch's tap l. ``b(z̄)`` is the generated
    bias g_b of eq. 10; eq. 7's constant b_2 is the generator's ``static`` part (a static kernel and bias).
    x [B, L, n], mask [B, L] -> [B, L, n], zero at padding. Positions beyond the history read zeros.
    """

    def __init__(self, dim: int, kernel_size: int, spec: GeneratorSpec) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"model.homogeneous.kernel_size={kernel_size} must be odd and >= 1 (eq. 6 is centred)")
        self.kernel_size = kernel_size
        self.generator = weight_generator(spec, kernel_size, dim, dim)  # window k -> n channels, context n
        self.static_kernel = nn.Parameter(torch.zeros(dim, kernel_size)) if spec.static else None  # b_2 of eq. 7
        self.static_bias = nn.Parameter(torch.zeros(dim)) if spec.static else None

    def kernels(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generated kernel [B, n, k] and bias [B, n] of each row."""
        w, b = self.generator.weights(self.generator.code(masked_mean(x, mask)))  # [B, n, k], [B, n]
        if self.static_kernel is not None:
            w, b = w + self.static_kernel, b + self.static_bias
        return w, b

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w, b = self.kernels(x, mask)
        half = self.kernel_size // 2
        padded = nn.functional.pad(zero_padding(x, mask), (0, 0, half, half))  # [B, L + k - 1, n]
        windows = padded.unfold(1, self.kernel_size, 1)  # [B, L, n, k]: x_{i-⌊k/2⌋} .. x_{i+⌊k/2⌋}
        y = torch.einsum("blnk,bnk->bln", windows, w) + b.unsqueeze(1)  # [B, L, n]
        return zero_padding(y, mask)


class HeterogeneousDPO(nn.Module):
    """Query-behaviour DPO (eqs. 8, 12): a linear map of the query whose weights come from the behaviours,

        y = W(z̄) x + b(z̄)     (+ W_0 x + b_0 with ``spec.static``)

    the feature-based DPO (§2.3, ``FeatureDPO``) with the behaviour sequence's mean as its context.
    query x [B, m], behaviours z [B, L, n], mask [B, L] -> [B, c]."""

    def __init__(self, query_dim: int, context_dim: int, out_dim: int, spec: GeneratorSpec) -> None:
        super().__init__()
        self.dpo = FeatureDPO(query_dim, out_dim, context_dim, spec)

    def forward(self, query: torch.Tensor, behaviours: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.dpo(query, masked_mean(behaviours, mask))
