"""Attention from a target item over a user's behaviours (DIN, DIEN), and the masking every sequence block shares.

Behaviour histories are padded at the end; ``mask`` [B, L] is True at real behaviours. A padded position never
receives weight and never changes an output, whatever its vector holds (tested with garbage there).
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.mlp import MLP, Activation


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``mask`` (broadcast to ``scores``); a row without any True position
    (an empty history) gets all-zero weights, so it attends to nothing instead of producing NaN."""
    mask = mask.expand_as(scores)
    any_valid = mask.any(dim=-1, keepdim=True)
    # an empty row softmaxes zeros (finite, gradient-safe) and is zeroed by the mask below
    scores = torch.where(any_valid, scores.masked_fill(~mask, float("-inf")), torch.zeros_like(scores))
    return torch.softmax(scores, dim=-1) * mask


def zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` [B, L, D] with the padded positions set to 0 (even if they held NaN)."""
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)


class DINAttention(nn.Module):
    """DIN's local activation unit and weighted sum pooling (Zhou et al. 2018, eq. 3 and Fig. 2):

        a_t = MLP([e_t, v_A, e_t - v_A, e_t ⊙ v_A]),     v_U(A) = sum_t a_t e_t

    e_t [B, L, D] the behaviours, v_A [B, D] the target ("ad"). The unit's input is the released code's
    (``din_fcn_attention``: query, keys, their difference and element-wise product), which is what DIN calls the
    "out product" of Fig. 2; the weights are not softmax-normalised (DIN §4.3: the sum keeps the intensity of the
    user's interest). The unit runs only on real behaviours (gathered), so padding costs nothing and Dice's batch
    statistics are over real behaviours only. Output [B, D]; an empty history pools to zeros.
    """

    def __init__(self, dim: int, hidden: list[int], activation: Activation) -> None:
        super().__init__()
        self.unit = MLP(4 * dim, hidden, 1, activation=activation)

    def scores(self, target: torch.Tensor, behaviours: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """a_t at the real behaviours, 0 at padding. [B, L]"""
        e = behaviours[mask]  # [N, D]: every real behaviour of the batch
        v = target.unsqueeze(1).expand_as(behaviours)[mask]  # [N, D]: its row's target
        a = self.unit(torch.cat([e, v, e - v, e * v], dim=-1)).squeeze(-1)  # [N]
        return behaviours.new_zeros(mask.shape).masked_scatter(mask, a)  # [B, L]

    def forward(self, target: torch.Tensor, behaviours: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.scores(target, behaviours, mask)  # [B, L]
        return (a.unsqueeze(-1) * zero_padding(behaviours, mask)).sum(dim=1)  # [B, D]
