"""Mutual information between a field pair and the label (OptInter eq. 21; Figures 5 and 6).

    MI({H}, y) = - sum_y P(y) log P(y) + sum_{h, y} P(h, y) log P(y | h),   H = (x_i, x_j)

the label's entropy minus its entropy given the pair's value (in nats). Probabilities are the empirical
frequencies of the split the ids come from (OptInter scores the training data). A pair whose value determines the
label has MI = H(y); a pair independent of the label has MI near 0 (the plug-in estimate is biased upwards by
about (distinct values - 1) / (2 N), so compare pairs of similar cardinality, as the paper's heat map does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of the distribution given by non-negative ``counts``."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def pair_mutual_information(ids: np.ndarray, label: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """MI of each field pair's value with the binary label (eq. 21).

    Args:
        ids: ``[N, F]`` non-negative integer ids per field (a cache split's ``ids``).
        label: ``[N]`` labels in {0, 1}.
        pairs: field index pairs ``(i, j)``.

    Returns:
        ``[P]`` mutual information in nats, one per pair, in the order of ``pairs``.

    Example:
        >>> ids = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]); y = np.array([0, 1, 1, 0])
        >>> pair_mutual_information(ids, y, [(0, 1)]).round(4)  # y = xor: the pair determines it
        array([0.6931])
    """
    ids = np.asarray(ids, dtype=np.int64)
    y = np.asarray(label).astype(np.int64)
    if ids.ndim != 2 or y.shape != (ids.shape[0],):
        raise ValueError(f"ids must be [N, F] and label [N]; got {ids.shape} and {y.shape}")
    if ids.size and ids.min() < 0:
        raise ValueError("ids must be non-negative (cache ids are)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("label must be 0/1")
    n = len(y)
    h_y = _entropy(np.bincount(y, minlength=2))
    vocab = ids.max(axis=0) + 1  # [F]
    out = np.empty(len(pairs))
    for k, (i, j) in enumerate(pairs):  # one vectorised pass over the rows per pair
        _, value = np.unique(ids[:, i] * vocab[j] + ids[:, j], return_inverse=True)  # [N] dense pair value
        joint = np.bincount(value * 2 + y, minlength=2 * (value.max() + 1)).reshape(-1, 2)  # [H, 2]
        n_h = joint.sum(axis=1, keepdims=True)  # [H, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            cond = np.where(joint > 0, joint * np.log(joint / n_h), 0.0)  # n(h, y) log P(y | h)
        out[k] = h_y + cond.sum() / n
    return out
