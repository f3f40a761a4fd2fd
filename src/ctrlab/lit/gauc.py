"""GAUC, the impression-weighted per-user AUC that DIN reports (Zhou et al. 2018, §5.3, eq. 7; from Zhu et al. 2017):

    GAUC = sum_u w_u AUC_u / sum_u w_u,    w_u = the number of u's impressions,

over the users whose impressions have both a click and a non-click (AUC_u is undefined otherwise). Ties in score
count one half, as in the AUC.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def group_auc(groups: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """GAUC of ``scores`` [N] against 0/1 ``labels`` [N], grouped by ``groups`` [N] (user ids); NaN when no group
    has both labels. Vectorised: one sort by (group, score), tie-averaged ranks within each group, and the
    Mann-Whitney form AUC_u = (sum of the positives' ranks - P(P+1)/2) / (P N) per group."""
    scores, labels = scores.double(), labels.double()
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]  # by group, then by score
    g, s, y = groups[order], scores[order], labels[order]
    _, group_of, group_sizes = torch.unique_consecutive(g, return_inverse=True, return_counts=True)
    group_start = torch.cumsum(group_sizes, 0) - group_sizes  # [G]
    starts_tie = torch.ones_like(g, dtype=torch.bool)
    starts_tie[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    tie_of = torch.cumsum(starts_tie, 0) - 1  # [N]
    tie_sizes = torch.bincount(tie_of)
    tie_start = torch.cumsum(tie_sizes, 0) - tie_sizes
    # 1-based rank inside the group, averaged over a run of equal scores
    rank = (tie_start[tie_of] - group_start[group_of]).double() + (tie_sizes[tie_of].double() + 1) / 2
    positives = torch.bincount(group_of, weights=y)  # [G]
    negatives = group_sizes.double() - positives
    rank_sum = torch.bincount(group_of, weights=rank * y)
    both = (positives > 0) & (negatives > 0)
    auc = (rank_sum[both] - positives[both] * (positives[both] + 1) / 2) / (positives[both] * negatives[both])
    weights = group_sizes[both].double()
    return (auc * weights).sum() / weights.sum()


class GroupAUC(Metric):
    """``group_auc`` over every (group, score, label) of an evaluation epoch (kept whole: per-user AUCs need every
    impression of a user, which may span batches)."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("groups", "scores", "labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, groups: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        self.groups.append(groups)
        self.scores.append(scores.detach())
        self.labels.append(labels)

    def compute(self) -> torch.Tensor:
        return group_auc(dim_zero_cat(self.groups), dim_zero_cat(self.scores), dim_zero_cat(self.labels)).float()
