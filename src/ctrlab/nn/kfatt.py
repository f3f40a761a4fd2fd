"""Kalman filtering attention (Liu et al. 2020, "Kalman Filtering Attention for User Behavior Modeling in CTR
Prediction", NeurIPS 2020): the query-specific interest aggregator that DPN's decoder builds on (DPN App. G.2).

KFAtt reads attention's weighted pooling as a maximum a posteriori estimate. The user's hidden interest under the
query q has a global Gaussian prior N(mu_q, sigma_q^2); every behaviour t is a sensor that measures it with noise
of variance sigma_t^2. The MAP estimate is the precision-weighted mean

    v_q = (mu_q / sigma_q^2 + sum_t v_t / sigma_t^2) / (1 / sigma_q^2 + sum_t 1 / sigma_t^2).

KFAtt-base takes attention's score as the measurement's log precision, 1 / sigma_t^2 = exp(<q, k_t> / sqrt(d)),
so with no prior (sigma_q -> inf) it is ordinary softmax attention; the prior pulls the estimate towards a
query-level global interest when few behaviours are relevant (a new demand). KFAtt-freq corrects the bias towards
frequent behaviours: the n_m repeats of one distinct behaviour m are one sensor whose error has a system part that
repetition does not average away, variance sigma_sys,m^2 + sigma_m^2 / n_m, so the total weight of the repeats is
capped at 1 / sigma_sys,m^2 however often the behaviour occurs.

How the learned quantities are parameterised (the paper's release was not found; docs/decisions.md, "Behaviour
sequences"): per head, mu_q = W_mu q, log(1 / sigma_q^2) = w_0^T q + b_0 and log(1 / sigma_sys,t^2) = w_s^T k_t + b_s
are linear maps; the weights are computed in log space as one softmax over {prior, behaviours}.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.behaviour_transformer import check_heads, split_heads
from ctrlab.nn.target_attention import masked_softmax, zero_padding


def repeat_counts(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """n_t: how many real behaviours of the same row equal behaviour t on every id channel (itself included).
    ids [B, C, L] (e.g. item and category histories), mask [B, L] -> [B, L] float, 1 at padding."""
    same = (ids.unsqueeze(-1) == ids.unsqueeze(-2)).all(dim=1) & mask.unsqueeze(1)  # [B, L, L]
    return same.sum(dim=-1).clamp(min=1).to(torch.get_default_dtype())


class KalmanFilteringAttention(nn.Module):
    """KFAtt over ``num_heads`` heads: query q [B, D], behaviours (keys = values) [B, L, D], mask [B, L], and for
    KFAtt-freq the repeat counts n_t [B, L] (``repeat_counts``). Per head h, with q_h = q W_Q^h, k_t = e_t W_K^h,
    v_t = e_t W_V^h, s_t = <q_h, k_t> / sqrt(d_h):

        log precision of the prior        s_0 = w_0^T q + b_0,  value mu_q = q W_mu^h
        base: log precision of t          s_t
        freq: log precision of t          -log(exp(-r_t) + exp(-s_t) / n_t) - log n_t,  r_t = w_s^T e_t + b_s
        v^_q = softmax over {prior, real behaviours} of the log precisions, applied to {mu_q, v_t}

    (with freq, the n_t copies of one behaviour together weigh 1 / (exp(-r) + exp(-s) / n), the capped sensor).
    Heads are concatenated and projected by W_O. Output [B, D]; an empty history returns the prior's read-out.
    """

    def __init__(self, dim: int, num_heads: int, frequency: bool) -> None:
        super().__init__()
        check_heads(dim, num_heads)
        self.num_heads, self.frequency = num_heads, frequency
        self.query, self.key, self.value, self.prior_mean, self.out = (nn.Linear(dim, dim) for _ in range(5))
        self.prior_precision = nn.Linear(dim, num_heads)  # w_0, b_0 per head
        self.system_precision = nn.Linear(dim, num_heads) if frequency else None  # w_s, b_s per head

    def forward(
        self,
        query: torch.Tensor,
        behaviours: torch.Tensor,
        mask: torch.Tensor,
        counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.frequency and counts is None:
            raise ValueError("KFAtt-freq needs the repeat counts of the behaviours")
        behaviours = zero_padding(behaviours, mask)
        heads = self.num_heads
        q = split_heads(self.query(query).unsqueeze(1), heads)  # [B, H, 1, d]
        k = split_heads(self.key(behaviours), heads)  # [B, H, L, d]
        v = split_heads(self.value(behaviours), heads)  # [B, H, L, d]
        mu = split_heads(self.prior_mean(query).unsqueeze(1), heads)  # [B, H, 1, d]
        s = (q @ k.transpose(-1, -2)).squeeze(2) / q.shape[-1] ** 0.5  # [B, H, L]
        if self.system_precision is not None:
            log_n = torch.log(counts).unsqueeze(1)  # [B, 1, L]
            r = self.system_precision(behaviours).transpose(1, 2)  # [B, H, L]
            s = -torch.logaddexp(-r, -s - log_n) - log_n
        s0 = self.prior_precision(query).unsqueeze(-1)  # [B, H, 1]
        prior_mask = torch.ones_like(mask[:, :1])
        weights = masked_softmax(torch.cat([s0, s], dim=-1), torch.cat([prior_mask, mask], dim=1)[:, None, :])
        estimate = weights.unsqueeze(2) @ torch.cat([mu, v], dim=2)  # [B, H, 1, d]
        return self.out(estimate.squeeze(2).flatten(1))  # [B, D]
