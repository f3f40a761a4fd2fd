"""OptInter eq. 21: the mutual information of a field pair with the label, against a direct computation."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from ctrlab.report.mutual_information import pair_mutual_information


def direct_mi(a: list[int], b: list[int], y: list[int]) -> float:
    """Eq. 21 term by term over Python dictionaries."""
    n = len(y)
    p_y = {v: c / n for v, c in Counter(y).items()}
    joint = Counter(zip(a, b, y, strict=True))
    marginal = Counter(zip(a, b, strict=True))
    entropy = -sum(p * math.log(p) for p in p_y.values())
    conditional = sum((c / n) * math.log(c / marginal[(i, j)]) for (i, j, _), c in joint.items())
    return entropy + conditional


def test_matches_the_direct_sum_of_eq_21():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, [5, 7, 3], size=(2000, 3))
    y = (rng.random(2000) < 0.2 + 0.1 * (ids[:, 0] == ids[:, 1] % 5)).astype(int)
    pairs = [(0, 1), (0, 2), (1, 2), (2, 0)]
    got = pair_mutual_information(ids, y, pairs)
    for k, (i, j) in enumerate(pairs):
        assert got[k] == pytest.approx(direct_mi(ids[:, i].tolist(), ids[:, j].tolist(), y.tolist()), abs=1e-12)


def test_a_pair_that_decides_the_label_carries_its_entropy_and_an_unrelated_one_nearly_nothing():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 4, size=(20000, 4))
    y = ((ids[:, 0] + ids[:, 1]) % 2).astype(int)  # decided by the pair (0, 1) jointly, by neither field alone
    mi = pair_mutual_information(ids, y, [(0, 1), (2, 3), (0, 2)])
    h_y = -sum(p * math.log(p) for p in np.bincount(y) / len(y))
    assert mi[0] == pytest.approx(h_y, abs=1e-12)
    assert mi[1] < 0.002 and mi[2] < 0.002  # plug-in bias ~ (16 - 1) / (2 * 20000)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="0/1"):
        pair_mutual_information(np.zeros((3, 2), int), np.array([0, 2, 1]), [(0, 1)])
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        pair_mutual_information(np.zeros(3, int), np.array([0, 1, 1]), [(0, 1)])
