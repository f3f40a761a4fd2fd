"""The interaction blocks of the deep baselines against slow, direct computations of their equations."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ctrlab.nn.bilinear import BilinearInteraction
from ctrlab.nn.cin import CIN
from ctrlab.nn.cross import CrossNetworkV1, LowRankMixture, cross_network
from ctrlab.nn.graph import AttentionalScoring, FieldGraph
from ctrlab.nn.logarithmic import LogarithmicTransform
from ctrlab.nn.residual import ResidualUnit
from ctrlab.nn.self_attention import InteractingLayer
from ctrlab.nn.senet import SENET

B, NF, D = 3, 4, 5  # batch, fields, embedding dim


def close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_residual_unit_adds_input_after_two_relu_layers():
    unit = ResidualUnit(6, 4)
    x = torch.randn(B, 6)
    for b in range(B):
        hidden = torch.relu(unit.inner.weight @ x[b] + unit.inner.bias)
        close(unit(x)[b], x[b] + torch.relu(unit.outer.weight @ hidden + unit.outer.bias))


def test_cross_v1_is_x0_times_scalar_plus_bias_plus_x():
    net = CrossNetworkV1(6, num_layers=3)
    torch.nn.init.normal_(net.bias)
    x0 = torch.randn(B, 6)
    for b in range(B):
        x = x0[b]
        for w, bias in zip(net.weight, net.bias, strict=True):
            x = x0[b] * torch.dot(x, w) + bias + x  # x_0 x_l^T w_l + b_l + x_l
        close(net(x0)[b], x)


def _cross_v2_by_example(net, x0, project):
    """x_{l+1} = x_0 ⊙ (project(layer, x_l) + b_l) + x_l, one example at a time."""
    out = []
    for b in range(x0.shape[0]):
        x = x0[b]
        for layer in net.layers:
            x = x0[b] * (project(layer.projection, x) + layer.bias) + x
        out.append(x)
    return torch.stack(out)


@pytest.mark.parametrize("kind", ["full", "low_rank"])
def test_cross_v2_full_and_low_rank_against_the_formula(kind):
    net = cross_network(kind, 6, 2, rank=3 if kind == "low_rank" else None, num_experts=None, activation=None)
    for layer in net.layers:
        torch.nn.init.normal_(layer.bias)
    x0 = torch.randn(B, 6)

    def project(p, x):
        if kind == "full":
            return p.weight.weight @ x  # W x
        return p.u.weight @ (p.v.weight @ x)  # U (V^T x)

    close(net(x0), _cross_v2_by_example(net, x0, project))


def test_low_rank_mixture_is_gated_sum_of_experts():
    mix = LowRankMixture(6, rank=3, num_experts=4, activation="tanh")
    x = torch.randn(B, 6)
    for b in range(B):
        gates = torch.softmax(mix.gate.weight @ x[b], dim=0)
        expected = sum(gates[k] * (mix.u[k] @ torch.tanh(mix.c[k] @ torch.tanh(mix.v[k].T @ x[b]))) for k in range(4))
        close(mix(x)[b], expected)


def test_mixture_cross_layer_equals_explicit_per_expert_sum():
    """DCN V2 mixture: x_{l+1} = sum_k G_k(x_l) E_k(x_l) + x_l, E_k = x_0 ⊙ (U_k g(C_k g(V_k^T x_l)) + b)"""
    net = cross_network("mixture", 6, 2, rank=2, num_experts=3, activation="relu")
    for layer in net.layers:
        torch.nn.init.normal_(layer.bias)
    x0 = torch.randn(B, 6)
    for b in range(B):
        x = x0[b]
        for layer in net.layers:
            p = layer.projection
            gates = torch.softmax(p.gate.weight @ x, dim=0)
            experts = [x0[b] * (p.u[k] @ torch.relu(p.c[k] @ torch.relu(p.v[k].T @ x)) + layer.bias) for k in range(3)]
            x = sum(g * e for g, e in zip(gates, experts, strict=True)) + x
        close(net(x0)[b], x)


def test_cross_network_rejects_arguments_its_type_does_not_use():
    with pytest.raises(ValueError, match="takes"):
        cross_network("full", 6, 2, rank=3, num_experts=None, activation=None)
    with pytest.raises(ValueError, match="one of"):
        cross_network("v3", 6, 2, rank=None, num_experts=None, activation=None)


@pytest.mark.parametrize("split_half", [False, True])
def test_cin_feature_maps_are_compressed_outer_products(split_half):
    """Eqs. 6-7 by loops; with split_half (xDeepFM's code) the first half of a layer's maps (all but the last
    layer's) feeds the next layer and only the second half is pooled into the output."""
    cin = CIN(NF, [4, 2, 3], split_half=split_half)
    x0 = torch.randn(B, NF, D)
    out_dim = 2 + 1 + 3 if split_half else 4 + 2 + 3
    expected = torch.zeros(B, out_dim)
    for b in range(B):
        x_prev, pooled = x0[b], []
        for k, w in enumerate(cin.weights):
            w = w.view(w.shape[0], x_prev.shape[0], NF)  # W^{k,h}_{ij}
            x_k = torch.zeros(w.shape[0], D)
            for h, i, j in itertools.product(range(w.shape[0]), range(x_prev.shape[0]), range(NF)):
                x_k[h] += w[h, i, j] * (x_prev[i] * x0[b, j])  # eq. 6
            half = w.shape[0] // 2
            last = k == len(cin.weights) - 1
            to_output = x_k[half:] if split_half and not last else x_k
            pooled.append(to_output.sum(dim=1))  # sum pooling, eq. 7
            x_prev = x_k[:half] if split_half and not last else x_k
        expected[b] = torch.cat(pooled)
    close(cin(x0), expected)
    assert cin.out_dim == out_dim
    fed = [NF, 2, 1] if split_half else [NF, 4, 2]  # H_{k-1} as layer k sees it
    assert [w.shape[1] for w in cin.weights] == [h * NF for h in fed]


def test_cin_split_half_needs_even_layers_but_the_last():
    CIN(NF, [4, 3], split_half=True)  # the last layer is not split
    with pytest.raises(ValueError, match=r"model\.cin_layers = \[3, 4\] must be even but for the last"):
        CIN(NF, [3, 4], split_half=True)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("variant", ["paper", "authors_code"])
def test_interacting_layer_is_softmax_attention_per_head(residual, variant):
    """paper: softmax of unscaled <W_Q e_m, W_K e_k>, ReLU(heads + W_Res e_m). authors_code: ReLU(W x + b) on
    every projection, scores / sqrt(d'), then LayerNorm over the output."""
    layer = InteractingLayer(D, attention_dim=3, num_heads=2, residual=residual, variant=variant)
    code = variant == "authors_code"
    if code:  # non-trivial biases and layer-norm affine, so that each of them is checked
        for lin in (layer.query, layer.key, layer.value, layer.residual):
            if lin is not None:
                torch.nn.init.normal_(lin.bias)
        torch.nn.init.normal_(layer.norm.weight)
        torch.nn.init.normal_(layer.norm.bias)

    def project(lin, rows, x):
        y = lin.weight[rows] @ x + (lin.bias[rows] if code else 0)
        return torch.relu(y) if code else y

    e = torch.randn(B, NF, D)
    out = layer(e)
    assert out.shape == (B, NF, 6)
    for b, m in itertools.product(range(B), range(NF)):
        heads = []
        for h in range(2):
            rows = slice(3 * h, 3 * h + 3)
            q = project(layer.query, rows, e[b, m])
            scores = torch.stack([torch.dot(q, project(layer.key, rows, e[b, k])) for k in range(NF)])
            if code:
                scores = scores / 3**0.5
            alpha = torch.exp(scores) / torch.exp(scores).sum()
            heads.append(sum(alpha[k] * project(layer.value, rows, e[b, k]) for k in range(NF)))
        expected = torch.cat(heads)
        if residual:
            expected = expected + project(layer.residual, slice(0, 6), e[b, m])
        expected = torch.relu(expected)
        if code:
            mean, var = expected.mean(), expected.var(unbiased=False)
            expected = (expected - mean) / torch.sqrt(var + 1e-8) * layer.norm.weight + layer.norm.bias
        close(out[b, m], expected)


def test_interacting_layer_variant_is_checked_by_name():
    allowed = r"is not one of \['paper', 'authors_code'\]"
    with pytest.raises(ValueError, match=r"model\.attention_variant = 'scaled' " + allowed):
        InteractingLayer(D, attention_dim=3, num_heads=2, residual=True, variant="scaled")


def test_senet_reweights_fields_by_excitation_of_mean_pooled_fields():
    senet = SENET(6, reduction_ratio=2)
    e = torch.randn(B, 6, D)
    w1, w2 = senet.excitation[0].weight, senet.excitation[2].weight  # [3, 6], [6, 3]
    for b in range(B):
        z = torch.stack([e[b, i].mean() for i in range(6)])
        a = torch.relu(w2 @ torch.relu(w1 @ z))
        for i in range(6):
            close(senet(e)[b, i], a[i] * e[b, i])


@pytest.mark.parametrize("kind", ["field_all", "field_each", "field_interaction"])
def test_bilinear_interaction_types(kind):
    bilinear = BilinearInteraction(NF, D, kind)
    v = torch.randn(B, NF, D)
    out = bilinear(v)
    assert out.shape == (B, NF * (NF - 1) // 2, D)
    for b, (p, (i, j)) in itertools.product(range(B), enumerate(itertools.combinations(range(NF), 2))):
        w = bilinear.weight[{"field_all": 0, "field_each": i, "field_interaction": p}[kind]]
        close(out[b, p], (v[b, i] @ w) * v[b, j])
    assert bilinear.weight.shape[0] == {"field_all": 1, "field_each": NF, "field_interaction": 6}[kind]


def test_logarithmic_neurons_are_exp_of_weighted_log_sums():
    layer = LogarithmicTransform(NF, num_neurons=3, min_abs=1e-4, batch_norm=False)
    e = torch.randn(B, NF, D)
    e[0, 0, 0] = 0.0  # clamped to min_abs
    out = layer(e)
    for b, n, d in itertools.product(range(B), range(3), range(D)):
        logs = [torch.log(torch.clamp(e[b, i, d].abs(), min=1e-4)) for i in range(NF)]
        log_sum = sum(layer.weight[n, i] * logs[i] for i in range(NF))
        close(out[b, n, d], torch.exp(log_sum))
    # prod_i |e_i|^{w_i}: integer weights give ordinary cross features
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]]))
    e = torch.rand(B, NF, D) + 0.5
    close(layer(e)[:, 0], e[:, 0] * e[:, 1])
    close(layer(e)[:, 1], e[:, 0] ** 2 * e[:, 3])


def test_logarithmic_layer_with_batch_norm_stays_finite():
    layer = LogarithmicTransform(NF, num_neurons=3, min_abs=1e-4, batch_norm=True)
    out = layer(torch.randn(8, NF, D) * 1e-4)
    assert out.shape == (8, 3, D) and torch.isfinite(out).all()


def _gru(cell, x, h):
    """The GRU equations (PyTorch's gate order r, z, n), for one node."""
    wr, wz, wn = cell.weight_ih.chunk(3)
    ur, uz, un = cell.weight_hh.chunk(3)
    br, bz, bn = cell.bias_ih.chunk(3)
    cr, cz, cn = cell.bias_hh.chunk(3)
    r = torch.sigmoid(wr @ x + br + ur @ h + cr)
    z = torch.sigmoid(wz @ x + bz + uz @ h + cz)
    n = torch.tanh(wn @ x + bn + r * (un @ h + cn))
    return (1 - z) * n + z * h


def test_fi_gnn_one_step_against_per_node_computation():
    graph = FieldGraph(NF, D, num_steps=1, residual=True)
    torch.nn.init.normal_(graph.bias)
    h0 = torch.randn(B, NF, D)
    w = graph.attention.weight.squeeze(0)
    for b in range(B):
        for i in range(NF):
            others = [j for j in range(NF) if j != i]
            pairs = [torch.cat([h0[b, i], h0[b, j]]) for j in others]  # [h_i ; h_j]
            scores = torch.stack([F.leaky_relu(torch.dot(w, pair)) for pair in pairs])
            weights = torch.exp(scores) / torch.exp(scores).sum()  # A_ij over j != i
            close(graph.adjacency(h0)[b, i, others], weights)
            assert graph.adjacency(h0)[b, i, i] == 0
            aggregated = sum(a * (graph.w_out[j] @ h0[b, j]) for a, j in zip(weights, others, strict=True))
            a_i = graph.w_in[i] @ aggregated + graph.bias
            close(graph(h0)[b, i], _gru(graph.gru, a_i, h0[b, i]) + h0[b, i])


def test_fi_gnn_steps_repeat_the_step_with_fixed_edges():
    graph = FieldGraph(NF, D, num_steps=3, residual=False)
    h0 = torch.randn(B, NF, D)
    adjacency, h = graph.adjacency(h0), h0
    for _ in range(3):
        h = graph.step(adjacency, h)
    close(graph(h0), h)


def test_attentional_scoring_sums_weighted_node_scores():
    scoring = AttentionalScoring(D)
    torch.nn.init.normal_(scoring.bias)
    h = torch.randn(B, NF, D)
    ws, wa = scoring.score.weight.squeeze(0), scoring.weight.weight.squeeze(0)
    for b in range(B):
        expected = sum(torch.sigmoid(torch.dot(wa, h[b, i])) * torch.dot(ws, h[b, i]) for i in range(NF))
        close(scoring(h)[b], expected + scoring.bias)
