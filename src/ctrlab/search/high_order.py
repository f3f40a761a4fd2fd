"""The candidate pools of AIM / AutoFIS's high-order interaction search (AIM Algorithm 1, lines 4-7).

Interactions are rows of field indices, ascending within a row: [U, p]. From the interactions of order p - 1
that the search kept (non-zero α after GRDA), the top k = floor(n / 2) by |α| (lines 6-7) are each extended by
every field they do not contain (line 4, ``Combine(M_{p-1}^top, M_1)``); duplicates are merged. That gives at
most k (n - p + 1) <= n² / 2 candidates of order p, instead of C(n, p). AIM does this per interaction function
(``next_pool``): each function's α ranks the interactions that kept it, as in the authors' code, so each function
has at most n² / 2 candidates and the union at most m n² / 2 interactions (m functions).

Ranking by |α|: a gate's sign is not its importance (Fig. 7 reads importance off |α|; the authors' code ranks the
2nd-order α by absolute value). Ties keep the earlier interaction.
"""

from __future__ import annotations

import torch

from ctrlab.nn.pairs import pair_indices


def all_pairs(num_fields: int) -> torch.Tensor:
    """Every 2nd-order interaction, the pool of the first search: [n(n-1)/2, 2], ordered as ``pair_indices``."""
    return torch.stack(pair_indices(num_fields), dim=1)


def top_k(units: torch.Tensor, alpha: torch.Tensor, k: int) -> torch.Tensor:
    """The k kept interactions (α != 0) with the largest |α| (Algorithm 1, lines 6-7), fewer if fewer are kept.
    units [U, p], alpha [U] -> [min(k, kept), p], by decreasing |α|."""
    if units.shape[0] != alpha.shape[0]:
        raise ValueError(f"top_k: {units.shape[0]} interactions but {alpha.shape[0]} weights")
    kept = (alpha != 0).nonzero().squeeze(1)  # [U_kept]
    order = torch.sort(alpha[kept].abs(), descending=True, stable=True).indices
    return units[kept[order[:k]]]


def combine(top: torch.Tensor, num_fields: int) -> torch.Tensor:
    """``Combine(M_{p-1}^top, M_1)`` (Algorithm 1, line 4): each interaction of ``top`` [K, p-1] extended by each
    field it lacks, fields sorted within a row, duplicates removed, rows in lexicographic order. -> [C, p]."""
    count, order = top.shape
    fields = torch.arange(num_fields, device=top.device)
    extended = torch.cat(
        [top[:, None, :].expand(count, num_fields, order), fields[None, :, None].expand(count, num_fields, 1)], dim=2
    )  # [K, n, p]
    new = ~(top[:, None, :] == fields[None, :, None]).any(dim=2)  # [K, n]: the field is not in the row yet
    rows = extended[new].sort(dim=1).values  # [K', p]
    return torch.unique(rows, dim=0)  # lexicographically sorted


def next_pool(units: torch.Tensor, alpha: torch.Tensor, num_fields: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Order p's candidate pool from order p - 1's search result (Algorithm 1, lines 4-7), one pool per
    interaction function as the authors' code builds it (``get_third_order`` / ``get_topK`` + ``get_high_order``):
    function j's candidates are Combine(Top_k(the order-(p-1) interactions that kept j, by |α_{·,j}|), M_1) with
    k = floor(n / 2), so at most k (n - p + 1) <= n² / 2 per function. AutoFIS is the case of one function.

    units [U, p-1], alpha [U, m] the raw weights of the kept slots (0 = dropped) -> (pool [C, p], the union of the
    functions' pools in lexicographic order, candidates [C, m] bool: which functions each pooled interaction is
    searched with)."""
    if units.shape[0] != alpha.shape[0]:
        raise ValueError(f"next_pool: {units.shape[0]} interactions but {alpha.shape[0]} rows of weights")
    pools = [combine(top_k(units, alpha[:, j], num_fields // 2), num_fields) for j in range(alpha.shape[1])]
    pool = torch.unique(torch.cat(pools), dim=0)  # [C, p]
    candidates = torch.stack([(pool[:, None, :] == rows[None]).all(-1).any(-1) for rows in pools], dim=1)  # [C, m]
    return pool, candidates
