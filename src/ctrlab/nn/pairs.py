"""Field pairs: the index bookkeeping that every pairwise-interaction block shares."""

from __future__ import annotations

import torch


def pair_indices(num_fields: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the P = F(F-1)/2 field pairs (i < j), in row-major order. Each [P]."""
    rows, cols = torch.triu_indices(num_fields, num_fields, offset=1, device=device)
    return rows, cols


def pairwise_products(emb: torch.Tensor) -> torch.Tensor:
    """Hadamard products of every field pair: [B, F, D] -> [B, P, D], pairs ordered as ``pair_indices``."""
    return hadamard_pairs(emb, *pair_indices(emb.shape[1], emb.device))


def hadamard_pairs(emb: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Hadamard products of the given field pairs (OptInter eq. 14, e_i ⊙ e_j): [B, F, D] with rows, cols [P]
    -> [B, P, D]."""
    return emb[:, rows] * emb[:, cols]
