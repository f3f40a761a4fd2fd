"""FwFM, FmFM, FFM, HOFM, AFM, NFM: each block against a direct computation of its equation, and the models
that compose them against theirs (learning tests: tests/test_baseline_models.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

from ctrlab.models.factorization import FFM, HOFM, NFM
from ctrlab.nn.anova import AnovaKernel
from ctrlab.nn.attention_pooling import AttentionalPooling
from ctrlab.nn.ffm import FieldAwareInteraction
from ctrlab.nn.fm import FMInteraction
from ctrlab.nn.fmfm import FieldMatrixedInteraction
from ctrlab.nn.fwfm import FieldWeightedInteraction
from tests.helpers import random_batch

B, F, D = 4, 6, 5
PAIRS = list(itertools.combinations(range(F), 2))


def test_fwfm_equals_weighted_pairwise_sum():
    block = FieldWeightedInteraction(F)
    torch.nn.init.normal_(block.field_pair_weights)
    v = torch.randn(B, F, D)
    r = block.field_pair_weights
    expected = sum(r[p] * (v[:, i] * v[:, j]).sum(-1) for p, (i, j) in enumerate(PAIRS))
    torch.testing.assert_close(block(v), expected, rtol=1e-5, atol=1e-5)


def test_fwfm_starts_as_fm():
    v = torch.randn(B, F, D)
    torch.testing.assert_close(FieldWeightedInteraction(F)(v), FMInteraction()(v).sum(-1), rtol=1e-5, atol=1e-5)


def test_fmfm_equals_explicit_bilinear_forms():
    block = FieldMatrixedInteraction(F, D)
    torch.nn.init.normal_(block.field_pair_matrices)
    v = torch.randn(B, F, D)
    m = block.field_pair_matrices
    expected = torch.zeros(B)
    for p, (i, j) in enumerate(PAIRS):
        for b in range(B):
            expected[b] += v[b, i] @ m[p] @ v[b, j]
    torch.testing.assert_close(block(v), expected, rtol=1e-5, atol=1e-5)


def test_ffm_equals_explicit_field_aware_sum():
    emb = torch.randn(B, F, F * D)
    expected = torch.zeros(B)
    for i, j in PAIRS:
        v_i_towards_j = emb[:, i, j * D : (j + 1) * D]
        v_j_towards_i = emb[:, j, i * D : (i + 1) * D]
        expected += (v_i_towards_j * v_j_towards_i).sum(-1)
    torch.testing.assert_close(FieldAwareInteraction(F, D)(emb), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_anova_kernel_equals_enumeration_of_tuples(order):
    v = torch.randn(B, F, D, dtype=torch.float64)
    expected = torch.zeros(B, D, dtype=torch.float64)
    for combo in itertools.combinations(range(F), order):
        expected += torch.stack([v[:, i] for i in combo]).prod(dim=0)
    torch.testing.assert_close(AnovaKernel(order)(v), expected)


def test_anova_order_two_is_fm():
    v = torch.randn(B, F, D)
    torch.testing.assert_close(AnovaKernel(2)(v), FMInteraction()(v), rtol=1e-5, atol=1e-5)


def test_attentional_pooling_equals_explicit_softmax_over_pairs():
    block = AttentionalPooling(D, attention_dim=3)
    W, bias = block.attention[0].weight, block.attention[0].bias  # [A, D], [A]
    h = block.attention[2].weight.squeeze(0)  # [A]
    v = torch.randn(B, F, D)
    expected = torch.zeros(B, D)
    for b in range(B):
        products = [v[b, i] * v[b, j] for i, j in PAIRS]
        scores = torch.stack([h @ torch.relu(W @ prod + bias) for prod in products])
        weights = torch.exp(scores) / torch.exp(scores).sum()
        expected[b] = sum(a * prod for a, prod in zip(weights, products, strict=True))
    torch.testing.assert_close(block(v), expected, rtol=1e-5, atol=1e-5)


def test_hofm_is_linear_plus_pairs_plus_triples_with_separate_embeddings(tiny_feature_map):
    model = HOFM(tiny_feature_map, embedding_dim=3, embedding_init_std=0.5, order=3)
    batch = random_batch(tiny_feature_map, 4, values=True)
    e2, e3 = (emb(batch) for emb in model.embeddings)  # P^(2), P^(3): [B, F, D] each
    fields = range(tiny_feature_map.num_fields)
    pairs = sum((e2[:, i] * e2[:, j]).sum(-1) for i, j in itertools.combinations(fields, 2))
    triples = sum((e3[:, i] * e3[:, j] * e3[:, k]).sum(-1) for i, j, k in itertools.combinations(fields, 3))
    torch.testing.assert_close(model(batch), model.linear(batch) + pairs + triples, rtol=1e-5, atol=1e-6)


def test_ffm_model_uses_one_vector_per_other_field(tiny_feature_map):
    model = FFM(tiny_feature_map, embedding_dim=3, embedding_init_std=0.5)
    assert model.embedding.table.weight.shape[1] == tiny_feature_map.num_fields * 3
    batch = random_batch(tiny_feature_map, 4)
    emb = model.embedding(batch)
    expected = model.linear(batch) + FieldAwareInteraction(tiny_feature_map.num_fields, 3)(emb)
    torch.testing.assert_close(model(batch), expected)


def test_nfm_without_mlp_is_a_projection_of_the_bi_interaction(tiny_feature_map):
    model = NFM(tiny_feature_map, 4, 0.5, interaction_dropout=0.0, mlp_hidden=None, mlp_dropout=0.0, mlp_norm="none")
    mlp = model.interaction[2]
    assert len(mlp) == 1 and isinstance(mlp[0], torch.nn.Linear)  # h^T f_BI + b (NFM-0)
    batch = random_batch(tiny_feature_map, 4)
    f_bi = FMInteraction()(model.embedding(batch))
    torch.testing.assert_close(model(batch), model.linear(batch) + mlp(f_bi).squeeze(-1))
