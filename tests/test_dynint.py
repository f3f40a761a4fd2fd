"""xDeepInt and DynInt (Yan & Li 2022): PIN, subspace-crossing and the three dynamic layers against direct
per-example computations, their initial points, the orthogonal penalties, memory, configs and learning."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ctrlab.models.dynint import DynIntDA, DynIntDGP, DynIntDWP
from ctrlab.models.fm import FM
from ctrlab.models.lr import LR
from ctrlab.models.xdeepint import XDeepInt
from ctrlab.nn.dynamic import (
    DynamicActivationPIN,
    DynamicGeneratedPIN,
    DynamicWeightedPIN,
    GeneratorNetwork,
    pairwise_abs_cosine,
)
from ctrlab.nn.polynomial import PolynomialInteraction, split_subspaces
from tests.helpers import ROOT, fit_and_auc, random_batch

D = 8  # embedding dim of the direct-computation tests


def subspace_rows(emb: torch.Tensor, h: int) -> list[list[torch.Tensor]]:
    """The subspace-crossed map built by hand: rows[b][f*h + s] = dims [s*D/h, (s+1)*D/h) of field f."""
    b_, f_, d_ = emb.shape
    c = d_ // h
    return [[emb[b, f, s * c : (s + 1) * c] for f in range(f_) for s in range(h)] for b in range(b_)]


def direct_pin(x: list[torch.Tensor], x0: list[torch.Tensor], w: torch.Tensor, gate=None) -> torch.Tensor:
    """Eq. 3 (eq. 4 with ``gate``) for one example, row by row: x_f ∘ (sum_g W[f, g] x0_g) (∘ G_f) + x_f."""
    out = []
    for f in range(len(x)):
        mixed = sum(w[f, g] * x0[g] for g in range(len(x0)))
        inter = x[f] * mixed
        out.append((inter * gate[f] if gate is not None else inter) + x[f])
    return torch.stack(out)


def generator_by_hand(net: torch.nn.Sequential, x0: torch.Tensor) -> torch.Tensor:
    """The two-layer generator, written out: W2 relu(W1 x + b1) + b2 on the flattened X0."""
    lin1, lin2 = net[0], net[2]
    hidden = torch.relu(x0.flatten(1) @ lin1.weight.T + lin1.bias)
    return hidden @ lin2.weight.T + lin2.bias


# --- subspace-crossing and the PIN layer -------------------------------------------------------------------


@pytest.mark.parametrize("h", [1, 2, 4, D])
def test_split_subspaces_stacks_field_chunks(h):
    emb = torch.randn(3, 5, D)
    out = split_subspaces(emb, h)
    assert out.shape == (3, 5 * h, D // h)
    for b in range(3):
        torch.testing.assert_close(out[b], torch.stack(subspace_rows(emb, h)[b]))


def test_split_subspaces_rejects_indivisible_dim():
    with pytest.raises(ValueError, match="not divisible"):
        split_subspaces(torch.randn(2, 3, 8), 3)


@pytest.mark.parametrize("h", [1, 2, 4, D])
def test_polynomial_interaction_is_eq3_per_example(h):
    torch.manual_seed(h)
    f = 5
    x0_emb, x_emb = torch.randn(4, f, D), torch.randn(4, f, D)
    layer = PolynomialInteraction(f * h)
    out = layer(split_subspaces(x_emb, h), split_subspaces(x0_emb, h))  # [B, F*h, D/h]
    x_rows, x0_rows = subspace_rows(x_emb, h), subspace_rows(x0_emb, h)
    for b in range(4):
        expected = direct_pin(x_rows[b], x0_rows[b], layer.weight.detach())
        torch.testing.assert_close(out[b], expected, rtol=1e-5, atol=1e-5)


def direct_eq2(rows: list[torch.Tensor], w_out: torch.Tensor, b_out: torch.Tensor, h: int, output_layer: str):
    """Eq. 2 for one example from the F*h sub-space rows of X_L: ``paper`` first concatenates each field's h
    rows back into its D-dim vector and weighs the F vectors; ``per_subspace`` weighs the F*h rows. Then
    (sum_r w_r x_r + b_out) summed over the columns."""
    if output_layer == "paper":
        rows = [torch.cat(rows[f * h : (f + 1) * h]) for f in range(len(rows) // h)]
    assert len(w_out) == len(rows)
    return sum(w_out[r] * rows[r] for r in range(len(rows))).add(b_out).sum()


@pytest.mark.parametrize("output_layer", ["paper", "per_subspace"])
@pytest.mark.parametrize("h", [1, 4])
def test_xdeepint_is_embedding_pin_stack_and_eq2(h, output_layer, tiny_feature_map):
    torch.manual_seed(0)
    model = XDeepInt(
        tiny_feature_map,
        embedding_dim=D,
        embedding_init_std=0.5,
        num_layers=3,
        num_subspaces=h,
        output_layer=output_layer,
    )
    torch.nn.init.normal_(model.output.bias)
    batch = random_batch(tiny_feature_map, 4)
    x0_rows = subspace_rows(model.embedding(batch).detach(), h)
    w_out, b_out = model.output.weight.detach(), model.output.bias.detach()
    expected = []
    for b in range(4):
        x = torch.stack(x0_rows[b])
        for layer in model.layers:
            x = direct_pin(list(x), x0_rows[b], layer.weight.detach())
        expected.append(direct_eq2(list(x), w_out, b_out, h, output_layer))
    torch.testing.assert_close(model(batch), torch.stack(expected), rtol=1e-5, atol=1e-5)
    assert model.output.weight.shape == (5 if output_layer == "paper" else 5 * h,)  # W_out: 1 x F or 1 x F*h


@pytest.mark.parametrize("output_layer", ["paper", "per_subspace"])
def test_zero_layers_is_a_logistic_regression(output_layer, tiny_feature_map):
    model = XDeepInt(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.5,
        num_layers=0,
        num_subspaces=2,
        output_layer=output_layer,
    )
    batch = random_batch(tiny_feature_map, 6)
    emb = model.embedding(batch)  # [B, F, D]
    if output_layer == "paper":  # one weight per field over all D dims; the bias counted D = 4 times
        expected = (emb * model.output.weight.view(5, 1)).sum(dim=(1, 2)) + 4 * model.output.bias
    else:  # row f*2 + s weighs chunk s of field f; the bias counted D/h = 2 times
        w = model.output.weight.view(5, 2, 1)
        expected = (emb.view(6, 5, 2, 2) * w).sum(dim=(1, 2, 3)) + 2 * model.output.bias
    torch.testing.assert_close(model(batch), expected)


def test_output_layer_is_checked_by_name(tiny_feature_map):
    with pytest.raises(ValueError, match=r"model\.output_layer = 'merged' is not one of \['paper', 'per_subspace'\]"):
        XDeepInt(
            tiny_feature_map,
            embedding_dim=4,
            embedding_init_std=0.5,
            num_layers=1,
            num_subspaces=2,
            output_layer="merged",
        )


# --- the dynamic layers against dense per-instance matrices --------------------------------------------


@pytest.mark.parametrize("h,r", [(1, 2), (2, 4), (D, 4)])
def test_dynamic_activation_is_eq4_per_example(h, r):
    torch.manual_seed(h)
    f = 4
    x0_emb, x_emb = torch.randn(3, f, D), torch.randn(3, f, D)
    layer = DynamicActivationPIN(f * h, f * D, r)
    x0, x = split_subspaces(x0_emb, h), split_subspaces(x_emb, h)
    out = layer(x, x0)
    gate = 2 * torch.sigmoid(generator_by_hand(layer.gate.net, x0_emb)).detach()  # [B, F*h]
    x_rows, x0_rows = subspace_rows(x_emb, h), subspace_rows(x0_emb, h)
    for b in range(3):
        expected = direct_pin(x_rows[b], x0_rows[b], layer.pin.weight.detach(), gate=gate[b])
        torch.testing.assert_close(out[b], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h,k,r", [(1, 3, 2), (2, 5, 4), (4, 16, 8), (D, 2, 4)])
def test_dynamic_generated_matches_dense_per_instance_w(h, k, r):
    torch.manual_seed(k)
    f = 4
    x0, x = split_subspaces(torch.randn(3, f, D), h), split_subspaces(torch.randn(3, f, D), h)
    layer = DynamicGeneratedPIN(f * h, f * D, kernel_size=k, reduction_ratio=r)
    torch.nn.init.normal_(layer.sigma_net[2].bias)  # spread Σ away from its starting point I
    out = layer(x, x0)
    sigma = 2 * torch.sigmoid(generator_by_hand(layer.sigma_net, x0)).detach()  # [B, K]
    u, v = layer.u.detach(), layer.v.detach()
    for b in range(3):
        w_b = u @ torch.diag(sigma[b]) @ v.T  # eq. 7, materialised: [F', F']
        torch.testing.assert_close(out[b], x[b] * (w_b @ x0[b]) + x[b], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h,k,r", [(1, 1, 2), (2, 3, 4), (4, 4, 8), (D, 2, 2)])
def test_dynamic_weighted_matches_dense_per_instance_g(h, k, r):
    torch.manual_seed(k)
    f = 4
    x0, x = split_subspaces(torch.randn(3, f, D), h), split_subspaces(torch.randn(3, f, D), h)
    layer = DynamicWeightedPIN(f * h, f * D, rank=k, reduction_ratio=r)
    out = layer(x, x0)
    raw = generator_by_hand(layer.factor_net, x0).detach().view(3, 2, k, f * h) + k**-0.5
    w = layer.weight.detach()
    for b in range(3):
        g_b = sum(torch.outer(raw[b, 0, p], raw[b, 1, p]) for p in range(k))  # eq. 9, materialised: [F', F']
        torch.testing.assert_close(out[b], x[b] * ((g_b * w) @ x0[b]) + x[b], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda f: DynamicActivationPIN(f, f, 2),
        lambda f: DynamicGeneratedPIN(f, f, 3, 2),
        lambda f: DynamicWeightedPIN(f, f, 2, 2),
    ],
)
def test_generators_see_a_stop_gradient_x0(make):
    """X0's gradient through a dynamic layer equals the gradient with the generated values held constant."""
    torch.manual_seed(0)
    layer = make(6)
    x0 = torch.randn(3, 6, 1, requires_grad=True)
    layer(x0, x0).sum().backward()
    grad = x0.grad.clone()
    x0.grad = None
    for module in layer.modules():
        if isinstance(module, GeneratorNetwork):
            module.register_forward_hook(lambda _m, _i, out: out.detach())
    layer(x0, x0).sum().backward()
    torch.testing.assert_close(x0.grad, grad)


# --- starting points ----------------------------------------------------------------------------------------


def criteo_like_map(num_fields: int = 39):
    from ctrlab.data.schema import FeatureMap, Field

    return FeatureMap(
        dataset="c",
        fields=[Field(f"f{i}", 50) for i in range(num_fields)],
        split_sizes={"train": 0, "valid": 0, "test": 0},
    )


@pytest.mark.parametrize("std", [1e-2, 1.0])
def test_da_gates_and_dgp_sigma_start_near_one(std):
    torch.manual_seed(0)
    fm = criteo_like_map()
    batch = random_batch(fm, 64)
    da = DynIntDA(
        fm,
        embedding_dim=16,
        embedding_init_std=std,
        num_layers=3,
        num_subspaces=4,
        output_layer="paper",
        reduction_ratio=8,
    )
    dgp = DynIntDGP(
        fm,
        embedding_dim=16,
        embedding_init_std=std,
        num_layers=3,
        num_subspaces=4,
        output_layer="paper",
        reduction_ratio=8,
        kernel_size=64,
        ortho_lambda=1e-3,
    )
    x0 = split_subspaces(da.embedding(batch), 4)
    with torch.no_grad():
        for layer in da.layers:
            gate = layer.gate(x0)  # [B, F', 1]
            assert gate.shape == (64, 39 * 4, 1)
            assert abs(gate.mean().item() - 1) < 0.05, gate.mean()
            if std == 1e-2:
                assert (gate - 1).abs().max() < 0.05
        for layer in dgp.layers:
            assert abs(layer.singular_values(x0).mean().item() - 1) < 0.05


@pytest.mark.parametrize("k", [1, 2, 4])
def test_dwp_weighting_matrix_starts_near_one(k):
    torch.manual_seed(0)
    fm = criteo_like_map()
    dwp = DynIntDWP(
        fm,
        embedding_dim=16,
        embedding_init_std=1e-2,
        num_layers=2,
        num_subspaces=2,
        output_layer="paper",
        reduction_ratio=8,
        rank=k,
        ortho_lambda=1e-3,
    )
    x0 = split_subspaces(dwp.embedding(random_batch(fm, 32)), 2)
    with torch.no_grad():
        for layer in dwp.layers:
            u, v = layer.factors(x0)  # [B, K, F']
            g = torch.einsum("bkf,bkg->bfg", u, v)  # G^(i), materialised here only
            assert abs(g.mean().item() - 1) < 0.05, g.mean()
            assert (g - 1).abs().max() < 0.2


# --- orthogonal regularisation (eqs. 11-12) ---------------------------------------------------------------


def abs_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b / (a.norm() * b.norm())).abs()


def test_pairwise_abs_cosine_is_a_double_loop():
    vecs = torch.randn(3, 5, 7)
    expected = torch.stack([sum(abs_cos(vecs[i, p], vecs[i, q]) for p in range(5) for q in range(p)) for i in range(3)])
    torch.testing.assert_close(pairwise_abs_cosine(vecs), expected)


def test_dgp_penalty_is_eq11_over_static_columns(tiny_feature_map):
    torch.manual_seed(0)
    model = DynIntDGP(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.1,
        num_layers=2,
        num_subspaces=2,
        output_layer="paper",
        reduction_ratio=2,
        kernel_size=4,
        ortho_lambda=0.3,
    )
    for layer in model.layers:  # move U, V off their orthogonal start, where the penalty is 0
        torch.nn.init.normal_(layer.u)
        torch.nn.init.normal_(layer.v)
    expected = 0.3 * sum(
        abs_cos(layer.u[:, p], layer.u[:, q]) + abs_cos(layer.v[:, p], layer.v[:, q])
        for layer in model.layers
        for p in range(4)
        for q in range(p)
    )
    batch = random_batch(tiny_feature_map, 3)
    torch.testing.assert_close(model.regularization(batch, model.forward_train(batch))["orthogonal"], expected)


def test_dgp_penalty_starts_at_zero_when_k_fits(tiny_feature_map):
    model = DynIntDGP(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.1,
        num_layers=2,
        num_subspaces=2,
        output_layer="paper",
        reduction_ratio=2,
        kernel_size=4,
        ortho_lambda=1.0,
    )  # K = 4 <= F' = 10
    batch = random_batch(tiny_feature_map, 3)
    assert model.regularization(batch, model.forward_train(batch))["orthogonal"].item() < 1e-5


def test_dwp_penalty_is_eq12_averaged_over_the_batch(tiny_feature_map):
    torch.manual_seed(0)
    k, lam = 3, 0.2
    model = DynIntDWP(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.5,
        num_layers=2,
        num_subspaces=2,
        output_layer="paper",
        reduction_ratio=2,
        rank=k,
        ortho_lambda=lam,
    )
    for layer in model.layers:
        torch.nn.init.normal_(layer.factor_net[2].weight)  # make the per-instance pairs differ
    batch = random_batch(tiny_feature_map, 5)
    output = model.forward_train(batch)
    x0 = split_subspaces(model.embedding(batch), 2)
    total = 0.0
    for layer in model.layers:
        u, v = layer.factors(x0)
        for i in range(5):
            total += sum(abs_cos(u[i, p], u[i, q]) + abs_cos(v[i, p], v[i, q]) for p in range(k) for q in range(p))
    torch.testing.assert_close(model.regularization(batch, output)["orthogonal"], lam * total / 5)


def test_dwp_penalty_reads_its_own_forward_not_the_last_one(tiny_feature_map):
    torch.manual_seed(0)
    model = DynIntDWP(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.5,
        num_layers=2,
        num_subspaces=1,
        output_layer="paper",
        reduction_ratio=2,
        rank=3,
        ortho_lambda=0.1,
    )
    for layer in model.layers:
        torch.nn.init.normal_(layer.factor_net[2].weight)
    first, second = random_batch(tiny_feature_map, 4, seed=1), random_batch(tiny_feature_map, 4, seed=2)
    out_first = model.forward_train(first)
    alone = model.regularization(first, out_first)["orthogonal"]
    model.forward_train(second)  # a later forward must not change what the first step's penalty is
    torch.testing.assert_close(model.regularization(first, out_first)["orthogonal"], alone)
    assert not torch.allclose(model.regularization(second, model.forward_train(second))["orthogonal"], alone)


def test_dwp_copies_and_pickles_after_a_forward(tiny_feature_map):
    import copy
    import pickle

    model = DynIntDWP(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.5,
        num_layers=1,
        num_subspaces=1,
        output_layer="paper",
        reduction_ratio=2,
        rank=2,
        ortho_lambda=0.1,
    )
    batch = random_batch(tiny_feature_map, 4)
    model(batch).sum().backward()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        torch.testing.assert_close(clone(batch), model(batch))
        assert clone.regularization(batch, clone.forward_train(batch))["orthogonal"].item() > 0


def test_penalty_off_and_da_has_none(tiny_feature_map):
    batch = random_batch(tiny_feature_map, 4)
    dwp = DynIntDWP(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.5,
        num_layers=1,
        num_subspaces=1,
        output_layer="paper",
        reduction_ratio=2,
        rank=2,
        ortho_lambda=0.0,
    )
    da = DynIntDA(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.5,
        num_layers=1,
        num_subspaces=1,
        output_layer="paper",
        reduction_ratio=2,
    )
    assert dwp.regularization(batch, dwp.forward_train(batch)) == {}
    assert da.regularization(batch, da.forward_train(batch)) == {}


# --- shapes, groups, gradients, configs ---------------------------------------------------------------------

MODELS = {
    "xdeepint": lambda fm: XDeepInt(fm, 8, 0.1, num_layers=2, num_subspaces=2, output_layer="paper"),
    "dynint_da": lambda fm: DynIntDA(
        fm, 8, 0.1, num_layers=2, num_subspaces=2, output_layer="paper", reduction_ratio=4
    ),
    "dynint_dgp": lambda fm: DynIntDGP(
        fm,
        8,
        0.1,
        num_layers=2,
        num_subspaces=2,
        output_layer="paper",
        reduction_ratio=4,
        kernel_size=6,
        ortho_lambda=1e-3,
    ),
    "dynint_dwp": lambda fm: DynIntDWP(
        fm, 8, 0.1, num_layers=2, num_subspaces=2, output_layer="paper", reduction_ratio=4, rank=2, ortho_lambda=1e-3
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_groups_and_gradients(name, tiny_feature_map):
    model = MODELS[name](tiny_feature_map)
    batch = random_batch(tiny_feature_map, 7, values=True)
    output = model.forward_train(batch)
    assert output.logits.shape == (7,)
    (output.logits.sum() + sum(model.regularization(batch, output).values())).backward()
    groups = model.parameter_groups()
    assert set(groups) == {"embedding", "dense"}
    assert groups["embedding"] == [model.embedding.table.weight]
    assert sum(p.numel() for ps in groups.values() for p in ps) == model.num_parameters()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", list(MODELS))
def test_model_config_instantiates(name, tiny_feature_map):
    # composed as the training entry point does (the config's defaults list picks the paper's optimizer)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "model.embedding_dim=8", "model.num_subspaces=4"]).model
    model = instantiate(cfg, _partial_=True)(feature_map=tiny_feature_map)
    assert type(model).__name__ == type(MODELS[name](tiny_feature_map)).__name__
    assert cfg.output_layer == "paper" and model.output.weight.shape == (tiny_feature_map.num_fields,)
    assert model(random_batch(tiny_feature_map, 3)).shape == (3,)


# --- memory: the fast paths never hold a B×F'×F' tensor for backward ------------------------------------


def saved_numels(layer: torch.nn.Module, x: torch.Tensor) -> list[int]:
    numels: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        numels.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x, x).sum().backward()
    return numels


class NaiveGeneratedPIN(DynamicGeneratedPIN):
    def forward(self, x, x0):
        w = torch.einsum("fk,bk,gk->bfg", self.u, self.singular_values(x0), self.v)  # [B, F', F']
        return x * torch.bmm(w, x0) + x


@pytest.mark.parametrize(
    "make",
    [
        lambda f: DynamicGeneratedPIN(f, f, kernel_size=4, reduction_ratio=4),
        lambda f: DynamicWeightedPIN(f, f, rank=2, reduction_ratio=4),
        lambda f: DynamicActivationPIN(f, f, reduction_ratio=4),
    ],
)
def test_fast_paths_save_no_batch_by_field_by_field_tensor(make):
    b, f = 8, 50  # B*F*F = 20000, larger than anything the fast paths should keep (B*K*F = 800, F*F = 2500)
    x = torch.randn(b, f, 1, requires_grad=True)
    assert max(saved_numels(make(f), x)) < b * f * f
    # the hook does see a materialised per-instance matrix when there is one
    assert max(saved_numels(NaiveGeneratedPIN(f, f, 4, 4), x)) >= b * f * f


# --- learning -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triples_baselines(synthetic_triples):
    fm, splits = synthetic_triples
    torch.manual_seed(0)
    lr_auc = fit_and_auc(LR(fm), splits, epochs=4, lr=1e-2)
    torch.manual_seed(0)
    fm_auc = fit_and_auc(FM(fm, embedding_dim=8, embedding_init_std=1e-2), splits, epochs=10, lr=1e-2)
    return lr_auc, fm_auc


def test_xdeepint_learns_planted_triples_better_than_fm(synthetic_triples, triples_baselines):
    """Third-order terms dominate: FM (2nd order) is no better than LR here, a 3-layer PIN is."""
    fm, splits = synthetic_triples
    lr_auc, fm_auc = triples_baselines
    torch.manual_seed(0)
    model = XDeepInt(fm, embedding_dim=8, embedding_init_std=1e-2, num_layers=3, num_subspaces=1, output_layer="paper")
    auc = fit_and_auc(model, splits, epochs=10, lr=1e-2)
    assert auc > fm_auc + 0.03, f"xDeepInt AUC {auc:.4f} vs FM {fm_auc:.4f} (LR {lr_auc:.4f})"


@pytest.fixture(scope="module")
def pairs_lr_auc(synthetic_pairs):
    fm, splits = synthetic_pairs
    return fit_and_auc(LR(fm), splits, lr=1e-2)


@pytest.mark.parametrize("name", ["dynint_da", "dynint_dgp", "dynint_dwp"])
def test_dynint_variants_learn_planted_pairs(name, synthetic_pairs, pairs_lr_auc):
    fm, splits = synthetic_pairs
    torch.manual_seed(0)
    common = dict(
        embedding_dim=8, embedding_init_std=1e-2, num_layers=3, num_subspaces=1, output_layer="paper", reduction_ratio=4
    )
    model = {
        "dynint_da": lambda: DynIntDA(fm, **common),
        "dynint_dgp": lambda: DynIntDGP(fm, **common, kernel_size=16, ortho_lambda=1e-3),
        "dynint_dwp": lambda: DynIntDWP(fm, **common, rank=2, ortho_lambda=1e-3),
    }[name]()
    auc = fit_and_auc(model, splits, epochs=5, lr=1e-2)  # raises on NaN (AUC of NaN logits fails below)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert auc > pairs_lr_auc + 0.05, f"{name}: AUC {auc:.4f} vs LR {pairs_lr_auc:.4f}"
