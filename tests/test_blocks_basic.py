"""Embedding, linear term, MLP and FM interaction against direct computations."""

from __future__ import annotations

import itertools

import pytest
import torch

from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.fm import FMInteraction
from ctrlab.nn.mlp import MLP
from tests.helpers import random_batch


def test_feature_embedding_uses_per_field_offsets_and_values(tiny_feature_map):
    emb = FeatureEmbedding(tiny_feature_map, dim=3, init_std=1.0)
    batch = random_batch(tiny_feature_map, 8, values=True)
    out = emb(batch)  # [B, F, D]
    offsets = [0, 5, 12, 15, 26]
    for b, f in itertools.product(range(8), range(5)):
        row = emb.table.weight[offsets[f] + batch["ids"][b, f]]
        torch.testing.assert_close(out[b, f], row * batch["values"][b, f])


def test_linear_term_is_bias_plus_sum_of_weights(tiny_feature_map):
    lin = LinearTerm(tiny_feature_map)
    torch.nn.init.normal_(lin.weights.table.weight)
    torch.nn.init.normal_(lin.bias)
    batch = random_batch(tiny_feature_map, 8)
    w = lin.weights.table.weight.squeeze(1)
    offsets = torch.tensor([0, 5, 12, 15, 26])
    expected = torch.stack([lin.bias + w[offsets + batch["ids"][b]].sum() for b in range(8)])
    torch.testing.assert_close(lin(batch), expected)


def test_fm_identity_equals_explicit_pairwise_sum():
    x = torch.randn(4, 6, 5)
    expected = torch.zeros(4, 5)
    for i, j in itertools.combinations(range(6), 2):
        expected += x[:, i] * x[:, j]
    torch.testing.assert_close(FMInteraction()(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_mlp_shapes(norm):
    mlp = MLP(12, [8, 4], out_dim=1, dropout=0.1, norm=norm)
    assert mlp(torch.randn(5, 12)).shape == (5, 1)
    assert MLP(12, [8, 4], out_dim=None).out_dim == 4


def test_mlp_rejects_unknown_norm():
    with pytest.raises(ValueError, match="none, batch, layer"):
        MLP(4, [4], norm="group")


def test_pairwise_products_enumerate_pairs_in_order():
    from ctrlab.nn.pairs import pair_indices, pairwise_products

    x = torch.randn(3, 4, 2)
    expected = torch.stack([x[:, i] * x[:, j] for i, j in itertools.combinations(range(4), 2)], dim=1)
    torch.testing.assert_close(pairwise_products(x), expected)
    rows, cols = pair_indices(4)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == list(itertools.combinations(range(4), 2))
