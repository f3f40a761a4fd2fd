"""IPNN, OPNN, PNN and PIN: product layers and micro-networks against direct computations, and the PNN
model against its equation (learning tests: tests/test_baseline_models.py)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as nnf

from ctrlab.models.pnn import PNN
from ctrlab.nn.pin_network import PairSubNetworks
from ctrlab.nn.product import InnerProduct, OuterProduct
from tests.helpers import random_batch

B, F, D = 4, 6, 5
PAIRS = list(itertools.combinations(range(F), 2))


def test_inner_product_layer_equals_explicit_inner_products():
    v = torch.randn(B, F, D)
    expected = torch.stack([(v[:, i] * v[:, j]).sum(-1) for i, j in PAIRS], dim=1)  # [B, P]
    block = InnerProduct(F)
    torch.testing.assert_close(block(v), expected, rtol=1e-5, atol=1e-5)
    assert block.out_features == len(PAIRS)


def test_outer_product_layer_equals_sum_of_explicit_outer_products():
    v = torch.randn(B, F, D)
    expected = torch.zeros(B, D, D)
    for b, i, j in itertools.product(range(B), range(F), range(F)):
        expected[b] += torch.outer(v[b, i], v[b, j])
    block = OuterProduct(D)
    torch.testing.assert_close(block(v), expected.flatten(1), rtol=1e-5, atol=1e-5)
    assert block.out_features == D * D


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_pin_subnetworks_equal_a_per_pair_loop(norm):
    block = PairSubNetworks(F, D, hidden=[7, 3], norm=norm)
    if norm == "layer":  # non-trivial affine parts, so the test sees them
        for ln in block.norms:
            torch.nn.init.normal_(ln.weight)
            torch.nn.init.normal_(ln.bias)
    v = torch.randn(B, F, D)
    outputs = []
    for p, (i, j) in enumerate(PAIRS):
        h = torch.cat([v[:, i], v[:, j], v[:, i] * v[:, j]], dim=-1)  # [B, 3D]
        for layer, (w, b, ln) in enumerate(zip(block.weights, block.biases, block.norms, strict=True)):
            h = h @ w[p] + b[p]
            if norm == "layer":
                h = nnf.layer_norm(h, (h.shape[-1],), ln.weight, ln.bias)
            if layer < len(block.weights) - 1:
                h = torch.relu(h)
        outputs.append(h)  # [B, 3]
    expected = torch.cat(outputs, dim=1)  # [B, P * 3], pair by pair
    torch.testing.assert_close(block(v), expected, rtol=1e-5, atol=1e-5)
    assert block.out_features == len(PAIRS) * 3


def test_pin_subnetwork_rejects_unknown_norm():
    with pytest.raises(ValueError, match="none or layer"):
        PairSubNetworks(F, D, hidden=[4], norm="batch")


MLP_ARGS = dict(mlp_hidden=[32, 32], mlp_dropout=0.0, mlp_norm="none")


def test_pnn_feeds_z_and_both_products_to_the_mlp(tiny_feature_map):
    model = PNN(tiny_feature_map, 4, 0.5, inner_product=True, outer_product=True, **MLP_ARGS)
    batch = random_batch(tiny_feature_map, 4)
    f = model.embedding(batch)
    nf = tiny_feature_map.num_fields
    inner = torch.stack([(f[:, i] * f[:, j]).sum(-1) for i, j in itertools.combinations(range(nf), 2)], 1)
    f_sum = f.sum(1)
    outer = torch.einsum("bd,be->bde", f_sum, f_sum).flatten(1)
    expected = model.mlp(torch.cat([f.flatten(1), inner, outer], dim=1)).squeeze(-1)
    torch.testing.assert_close(model(batch), expected, rtol=1e-5, atol=1e-5)


def test_pnn_without_mlp_is_one_linear_layer_over_the_product_layer(tiny_feature_map):
    model = PNN(
        tiny_feature_map,
        4,
        0.5,
        inner_product=True,
        outer_product=True,
        mlp_hidden=None,
        mlp_dropout=0.0,
        mlp_norm="none",
    )
    assert len(model.mlp) == 1 and isinstance(model.mlp[0], torch.nn.Linear)
    nf = tiny_feature_map.num_fields
    assert model.mlp[0].in_features == nf * 4 + nf * (nf - 1) // 2 + 4 * 4


def test_pnn_needs_a_product_layer(tiny_feature_map):
    with pytest.raises(ValueError, match="inner_product, outer_product or both"):
        PNN(tiny_feature_map, 4, 0.5, inner_product=False, outer_product=False, **MLP_ARGS)
