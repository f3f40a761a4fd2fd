"""OptInter's combination block (eq. 18): a pair's interaction embedding as the weighted sum of its candidates.

    e^b_(i,j) = p^m e^m_(i,j) + p^f e^f_(i,j) + p^n e^n

The naive candidate e^n is the empty (zero) embedding, so its term vanishes and only the weight it takes from
the other two remains. With one-hot weights this is eq. 19's fixed choice computed by the search model
(OptInter Table IX, "without re-train").
"""

from __future__ import annotations

import torch
from torch import nn


class MethodCombination(nn.Module):
    """``forward(weights [U, K], candidates) -> [B, U, D]``; ``candidates`` maps each option of ``options`` to its
    embeddings [B, U, D], or to None for an empty (naive) candidate."""

    def __init__(self, options: tuple[str, ...]) -> None:
        super().__init__()
        self.options = options

    def forward(self, weights: torch.Tensor, candidates: dict[str, torch.Tensor | None]) -> torch.Tensor:
        if set(candidates) != set(self.options):
            raise ValueError(f"combination candidates {sorted(candidates)} are not the options {list(self.options)}")
        terms = [
            weights[:, k, None] * candidates[option]  # p^k [U, 1] * e^k [B, U, D]
            for k, option in enumerate(self.options)
            if candidates[option] is not None
        ]
        if not terms:
            raise ValueError("the combination needs at least one non-empty candidate")
        return torch.stack(terms).sum(0)  # [B, U, D]
