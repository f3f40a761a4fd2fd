"""AutoGroup's blocks (Liu et al., "AutoGroup: Automatic Feature Grouping for Modelling Explicit High-Order
Feature Interactions in CTR Prediction", SIGIR 2020): the differentiable choice of each field's membership of
each feature group, and a group's p-th order interaction from its aggregated embedding.

The paper is not in this repository; the forms below are read from the authors' released code (Huawei Noah's
Ark ``vega``: ``FeatureGroupLayer`` and ``AutoGroupTrainerCallback``) and its documentation. Where we differ
from that code, docs/decisions.md ("AutoGroup and AutoFeature") says where and why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# option 0 of a (field, group) choice is "member", option 1 "not a member" (the released code's order)
MEMBER, NOT_MEMBER = 0, 1


def sample_membership(logits: torch.Tensor, tau: float, noise: bool) -> torch.Tensor:
    """Hard 0/1 membership of each field in each group, with the gradient of its soft relaxation
    (straight-through Gumbel-softmax). ``logits`` [F, S, 2] (member, not member) -> [F, S].

    ``noise``: add Gumbel noise (search steps); without it the choice is the argmax of the logits, a tie counting
    as membership (as the released code's ``y == max(y)``), which is what ``derive()`` reads off.
    """
    if noise:
        y = F.gumbel_softmax(logits, tau=tau, hard=True)  # [F, S, 2]: forward one-hot, backward soft
    else:
        soft = torch.softmax(logits / tau, dim=-1)
        hard = (soft == soft.max(dim=-1, keepdim=True).values).to(soft.dtype)
        y = hard - soft.detach() + soft
    return y[..., MEMBER]  # [F, S]


class FeatureGroupInteraction(nn.Module):
    """The p-th order interactions of S feature groups, linear in the number of fields.

    With ``e_i`` field i's order-p embedding after a batch normalisation without scale and shift (over the F·D
    inputs, as the released code), ``w_i^s`` a learned weight of field i in group s, and ``c_i^s`` in {0, 1} its
    membership, group s's aggregated embedding is ``g_s = sum_i c_i^s w_i^s e_i`` [D] and its interaction

        I_p(s) = g_s^p - λ · sum_i c_i^s (w_i^s e_i)^p          (powers element-wise over D)

    ``g_s^p`` expands into every ordered p-tuple of the group's members (repeats included); the second term
    takes away λ times the tuples of one field repeated p times, its pure self-interactions (λ = 1: all of them;
    at p = 2 this is twice FM's sum over pairs). Order 1 keeps the D values of each group, [B, S·D]; orders
    p >= 2 sum over D, [B, S].
    """

    def __init__(self, num_fields: int, dim: int, num_groups: int, order: int, self_interaction_weight: float) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"AutoGroup interaction order must be >= 1, got {order}")
        self.order = order
        self.self_interaction_weight = self_interaction_weight  # λ
        self.norm = nn.BatchNorm1d(num_fields * dim, affine=False)
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(num_fields, num_groups)))  # w [F, S]
        self.out_dim = num_groups * dim if order == 1 else num_groups

    def forward(self, emb: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
        """``emb`` [B, F, D], ``membership`` [F, S] (0/1, or straight-through) -> [B, S·D] (p = 1) or [B, S]."""
        p = self.order
        e = self.norm(emb.flatten(1)).view_as(emb)  # [B, F, D]
        g = torch.einsum("bfd,fs->bsd", e, membership * self.weight)  # g_s: [B, S, D]
        self_terms = torch.einsum("bfd,fs->bsd", e.pow(p), membership * self.weight.pow(p))  # [B, S, D]
        out = g.pow(p) - self.self_interaction_weight * self_terms  # I_p(s) per dimension: [B, S, D]
        return out.flatten(1) if p == 1 else out.sum(dim=-1)
