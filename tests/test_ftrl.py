"""FTRL-Proximal and G-FTRL against update sequences evaluated by hand from the closed forms, their sparsity
patterns, the no-drift property, and the optimizer configs."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from ctrlab.lit.module import CTRModule
from ctrlab.models.fm import FM
from ctrlab.models.xdeepint import XDeepInt
from ctrlab.optim import FTRL, GroupLassoFTRL
from tests.helpers import ROOT, random_batch

S2 = math.sqrt(2.0)


def run(opt_cls, w0: list, grads: list[list], **kw) -> list[torch.Tensor]:
    """Applies the gradients one step at a time; returns the weights after each step."""
    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = opt_cls([w], **kw)
    out = []
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(w.detach().clone())
    return out


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


# --- FTRL ---------------------------------------------------------------------------------------------------


def test_ftrl_three_steps_by_hand():
    """α = 0.5, β = 1, λ1 = 0.1, λ2 = 0.2, n0 = 0, textbook (no warm start). Four coordinates:
    0 and 1 get gradients in different steps, 2 stays inside the L1 dead zone, 3 never gets a gradient."""
    grads = [[0.6, -0.8, 0.05, 0.0], [0.8, 0.0, 0.0, 0.0], [0.0, 0.6, 0.0, 0.0]]
    w1, w2, w3 = run(FTRL, [0.0, 0.0, 0.0, 0.7], grads, lr=0.5, beta=1.0, l1=0.1, l2=0.2, warm_start=False)
    # step 1. coord 0: n = 0.36, σ = 0.6/0.5 = 1.2, z = 0.6, q = (1 + 0.6)/0.5 + 0.2 = 3.4
    #         coord 1: n = 0.64, σ = 1.6, z = -0.8, q = (1 + 0.8)/0.5 + 0.2 = 3.8
    #         coord 2: z = 0.05, |z| <= λ1 -> 0;  coord 3: no gradient -> keeps 0.7
    w0_1, w1_1 = -(0.6 - 0.1) / 3.4, -(-0.8 + 0.1) / 3.8
    close(w1, [w0_1, w1_1, 0.0, 0.7])
    # step 2. coord 0: n = 1.0, σ = (1 - 0.6)/0.5 = 0.8, z = 0.6 + 0.8 - 0.8 w, q = (1 + 1)/0.5 + 0.2 = 4.2
    z0_2 = 0.6 + 0.8 - 0.8 * w0_1
    w0_2 = -(z0_2 - 0.1) / 4.2
    close(w2, [w0_2, w1_1, 0.0, 0.7])
    # step 3. coord 1: n = 1.0, σ = (1 - 0.8)/0.5 = 0.4, z = -0.8 + 0.6 - 0.4 w, q = 4.2
    z1_3 = -0.8 + 0.6 - 0.4 * w1_1
    close(w3, [w0_2, -(z1_3 + 0.1) / 4.2, 0.0, 0.7])


def test_ftrl_textbook_first_step_forgets_the_initial_value():
    # z = g - σ w0 = 0.6 - 1.2 * 0.3, q = (1 + 0.6)/0.5 = 3.2
    (w1,) = run(FTRL, [0.3], [[0.6]], lr=0.5, beta=1.0, warm_start=False)
    close(w1, [-(0.6 - 1.2 * 0.3) / 3.2])


def test_ftrl_warm_start_by_hand():
    """α = 0.5, β = 1, λ1 = 0.05, λ2 = 0.2, w0 = 0.3: z0 = -q0 w0 - λ1 sign(w0), q0 = (1 + 0)/0.5 + 0.2 = 2.2."""
    w1, w2 = run(FTRL, [0.3], [[0.6], [-0.8]], lr=0.5, beta=1.0, l1=0.05, l2=0.2, warm_start=True)
    z0 = -2.2 * 0.3 - 0.05
    z1 = z0 + 0.6 - 1.2 * 0.3  # σ1 = 0.6/0.5, q1 = 3.4
    w1_ = -(z1 + 0.05) / 3.4
    close(w1, [w1_])
    z2 = z1 - 0.8 - 0.8 * w1_  # n = 1.0, σ2 = (1 - 0.6)/0.5, q2 = 4.2
    close(w2, [-(z2 + 0.05) / 4.2])
    # without L1 the warm-started step is w0 - g/q1: the proximal and L2 terms are centred at w0
    (w1_plain,) = run(FTRL, [0.3], [[0.6]], lr=0.5, beta=1.0, l2=0.2)
    close(w1_plain, [0.3 - 0.6 / 3.4])


def test_ftrl_initial_accumulator_and_zero_beta():
    # n0 = 0.1, β = 0, α = 0.5: n = 0.1 + 0.04, σ = (sqrt(0.14) - sqrt(0.1))/0.5, q = sqrt(0.14)/0.5
    (w1,) = run(FTRL, [0.0], [[0.2]], lr=0.5, beta=0.0, initial_accumulator_value=0.1, warm_start=False)
    close(w1, [-0.2 / (math.sqrt(0.14) / 0.5)])


# --- G-FTRL -------------------------------------------------------------------------------------------------


def test_group_lasso_ftrl_two_steps_by_hand():
    """α = 0.5, β = 1, λ1 = 0.1, λ2 = 0, rows of d = 2: threshold λ1 sqrt(2). Row 0 is large, row 1 starts
    in the dead zone and leaves it, row 2 never has a gradient; in step 2 row 0 has a zero coordinate."""
    thr = 0.1 * S2
    grads = [[[0.6, 0.8], [0.05, 0.05], [0.0, 0.0]], [[0.0, 0.6], [0.1, 0.1], [0.0, 0.0]]]
    w1, w2 = run(GroupLassoFTRL, [[0.0, 0.0]] * 3, grads, lr=0.5, beta=1.0, l1=0.1, warm_start=False)
    # step 1. row 0: n = (0.36, 0.64), z = (0.6, 0.8), ||z|| = 1, q = (1.6/0.5, 1.8/0.5) = (3.2, 3.6)
    #         row 1: z = (0.05, 0.05), ||z|| = 0.0707 <= 0.1414 -> zero row
    shrink = 1 - thr / 1.0
    r0 = [-shrink * 0.6 / 3.2, -shrink * 0.8 / 3.6]
    close(w1, [r0, [0.0, 0.0], [0.0, 0.0]])
    # step 2. row 0: coord 0 has g = 0 (σ = 0, z and q unchanged); coord 1: n = 1, σ = (1 - 0.8)/0.5 = 0.4,
    #         z = 0.8 + 0.6 - 0.4 w, q = 2/0.5 = 4. The whole row is re-solved with the new norm.
    z01 = 0.8 + 0.6 - 0.4 * r0[1]
    norm0 = math.sqrt(0.6**2 + z01**2)
    row0 = [-(1 - thr / norm0) * 0.6 / 3.2, -(1 - thr / norm0) * z01 / 4.0]
    #         row 1: n = 0.0125, σ = (sqrt(0.0125) - 0.05)/0.5, z = 0.05 + 0.1 - σ * 0 = 0.15 each,
    #         ||z|| = 0.15 sqrt(2) > thr, q = (1 + sqrt(0.0125))/0.5
    q1 = (1 + math.sqrt(0.0125)) / 0.5
    r1 = -(1 - thr / (0.15 * S2)) * 0.15 / q1
    close(w2, [row0, [r1, r1], [0.0, 0.0]])


def test_group_lasso_ftrl_warm_start_by_hand():
    """Row w0 = (0.3, 0.4), α = 0.5, β = 1, λ1 = 0.1: q0 = 2, ||q0 w0|| = 1, κ = 1 + λ1 sqrt(2), z0 = -κ q0 w0."""
    thr = 0.1 * S2
    kappa = 1 + thr
    z0 = [-kappa * 0.6, -kappa * 0.8]
    (w1,) = run(GroupLassoFTRL, [[0.3, 0.4]], [[[0.6, 0.0]]], lr=0.5, beta=1.0, l1=0.1)
    # coord 0: n = 0.36, σ = 1.2, z = z0 + 0.6 - 1.2 * 0.3, q = 3.2; coord 1: unchanged, q = 2
    z = [z0[0] + 0.6 - 1.2 * 0.3, z0[1]]
    norm = math.hypot(*z)
    close(w1, [[-(1 - thr / norm) * z[0] / 3.2, -(1 - thr / norm) * z[1] / 2.0]])


def test_group_lasso_warm_start_reproduces_initial_rows():
    """One step whose gradient is ~0 everywhere moves the warm-started rows by ~0, zero rows stay zero."""
    w = torch.nn.Parameter(torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.0, 0.0], [1e-3, 2e-3, 0.0]]))
    w0 = w.detach().clone()
    opt = GroupLassoFTRL([w], lr=0.05, beta=1.0, l1=0.05)
    w.grad = torch.full_like(w, 1e-9)
    opt.step()
    torch.testing.assert_close(w.detach(), w0, atol=1e-6, rtol=0)


def test_group_lasso_on_a_vector_is_elementwise_ftrl():
    grads = [[0.6, -0.03, 0.2], [0.1, 0.02, -0.5]]
    kw = dict(lr=0.3, beta=1.0, l1=0.05, l2=0.1, warm_start=False)
    for a, b in zip(run(GroupLassoFTRL, [0.0] * 3, grads, **kw), run(FTRL, [0.0] * 3, grads, **kw), strict=True):
        torch.testing.assert_close(a, b)


def test_group_lasso_zeroes_whole_rows_where_ftrl_zeroes_entries():
    """Fig. 2c: under a strong λ1, G-FTRL keeps or drops whole embedding rows; FTRL drops single entries."""
    torch.manual_seed(0)
    scale = torch.tensor([1.0, 1.0, 0.05, 0.05, 0.05, 1.0]).unsqueeze(1)  # rows 2-4 get weak gradients
    pattern = torch.tensor([1.0, 0.02, 1.0, 0.02])  # one weak coordinate per pair of columns in every row
    grads = [scale * pattern * (1 + 0.1 * torch.rand(6, 4)) for _ in range(5)]
    results = {}
    for cls in (GroupLassoFTRL, FTRL):
        w = torch.nn.Parameter(torch.zeros(6, 4))
        opt = cls([w], lr=0.1, beta=1.0, l1=0.5, warm_start=False)
        for g in grads:
            w.grad = g.clone()
            opt.step()
        results[cls] = w.detach()
    g_w = results[GroupLassoFTRL]
    zero_rows = (g_w == 0).all(dim=1)
    assert zero_rows.tolist() == [False, False, True, True, True, False]
    assert (g_w[~zero_rows] != 0).all()  # kept rows are dense, weak coordinates included
    f_w = results[FTRL]
    assert (f_w[:, [1, 3]] == 0).all() and (f_w[[0, 1, 5]][:, [0, 2]] != 0).all()  # scattered zeros


@pytest.mark.parametrize("cls", [FTRL, GroupLassoFTRL])
@pytest.mark.parametrize("warm_start", [True, False])
def test_rows_without_gradient_do_not_drift(cls, warm_start):
    """An embedding table trained on batches that miss some rows: those rows stay exactly as they were."""
    torch.manual_seed(0)
    table = torch.nn.Embedding(10, 4)
    initial = table.weight.detach().clone()
    opt = cls(table.parameters(), lr=0.1, beta=1.0, l1=1e-3, l2=1e-3, warm_start=warm_start)
    for step in range(4):
        opt.zero_grad()
        table(torch.tensor([0, 1, 2, step % 2 + 3])).pow(2).sum().backward()  # rows 5..9 never used
        opt.step()
    torch.testing.assert_close(table.weight[5:].detach(), initial[5:], rtol=0, atol=0)
    assert not torch.equal(table.weight[:3].detach(), initial[:3])


def test_state_changes_only_with_gradient():
    w = torch.nn.Parameter(torch.tensor([[0.5, -0.5], [0.2, 0.1]]))
    opt = GroupLassoFTRL([w], lr=0.1, l1=0.01)
    w.grad = torch.tensor([[0.3, 0.1], [0.0, 0.0]])
    opt.step()
    z, n = opt.state[w]["z"].clone(), opt.state[w]["n"].clone()
    w.grad = torch.zeros_like(w)
    opt.step()
    torch.testing.assert_close(opt.state[w]["z"], z, rtol=0, atol=0)
    torch.testing.assert_close(opt.state[w]["n"], n, rtol=0, atol=0)


def test_validation():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    with pytest.raises(ValueError, match="lr"):
        FTRL(p, lr=0.0)
    with pytest.raises(ValueError, match="l1"):
        FTRL(p, l1=-1.0)
    with pytest.raises(ValueError, match="beta > 0"):
        GroupLassoFTRL(p, beta=0.0)
    FTRL(p, beta=0.0)  # element-wise FTRL solves a coordinate only once it has had a gradient


# --- loss scale -------------------------------------------------------------------------------------------

AUTHORS_BATCH = 4096  # the xDeepInt/DynInt authors' batch size, over which their loss is summed


def embedding_steps(opt_cls, reduction: str, steps: int, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` optimizer steps on an embedding table [30, 4] under a logistic loss over batches of 4096
    examples (fixed read-out vector; frequent and rare rows), the loss summed or averaged over the batch.
    Returns (initial, final)."""
    gen = torch.Generator().manual_seed(0)
    table = torch.nn.Parameter(0.1 * torch.randn(30, 4, generator=gen, dtype=torch.float64))
    initial = table.detach().clone()
    readout = torch.randn(4, generator=gen, dtype=torch.float64)
    popularity = 1.0 / torch.arange(1, 26, dtype=torch.float64) ** 2  # Zipf-like rows 0..24; 25..29 never used
    opt = opt_cls([table], **kw)
    for _ in range(steps):
        ids = torch.multinomial(popularity, AUTHORS_BATCH, replacement=True, generator=gen)  # [B]
        labels = (torch.rand(AUTHORS_BATCH, generator=gen, dtype=torch.float64) < 0.3).double()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(table[ids] @ readout, labels, reduction=reduction)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return initial, table.detach()


@pytest.mark.parametrize("cls", [GroupLassoFTRL, FTRL])
@pytest.mark.parametrize("warm_start", [True, False])
def test_mean_loss_with_constants_over_b_equals_summed_loss(cls, warm_start):
    """The authors' constants on a summed loss == ours (β, λ1, λ2 divided by B, α kept) on the mean loss,
    step for step: the scaling that configs/optimizer/gftrl_ftrl.yaml applies."""
    cfg = OmegaConf.load(ROOT / "configs" / "optimizer" / "gftrl_ftrl.yaml").families.embedding
    ours = dict(beta=cfg.beta, l1=cfg.l1, l2=cfg.l2)
    authors = dict(beta=1.0, l1=10.0, l2=10.0)
    assert {k: v * AUTHORS_BATCH for k, v in ours.items()} == authors  # the config holds the authors' values / B
    kw = dict(lr=0.02, warm_start=warm_start)  # the authors' α
    for steps in (1, 3):
        initial, summed = embedding_steps(cls, "sum", steps, **kw, **authors)
        _, mean = embedding_steps(cls, "mean", steps, **kw, **ours)
        torch.testing.assert_close(mean, summed, rtol=1e-9, atol=1e-12)
        moved = (summed != initial).any(dim=1)
        assert moved[:25].all() and not moved[25:].any()
        if cls is GroupLassoFTRL and not warm_start:  # λ1 bites: some rows are zeroed, others kept
            zero = (summed == 0).all(dim=1)[:25]
            assert zero.any() and not zero.all()
    # at that tolerance the old λ1 = 1e-2 (4x the authors' 10 / 4096) on the mean loss is another optimizer
    # (cold start: a warm start cancels an element-wise λ1 until a weight crosses zero)
    _, old = embedding_steps(cls, "mean", 1, lr=0.02, warm_start=False, **(ours | dict(l1=1e-2)))
    _, summed = embedding_steps(cls, "sum", 1, lr=0.02, warm_start=False, **authors)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(old, summed, rtol=1e-9, atol=1e-12)


# --- configs ------------------------------------------------------------------------------------------------


def optimizers_for(config: str, model: torch.nn.Module) -> list[torch.optim.Optimizer]:
    cfg = OmegaConf.create({"optimizer": OmegaConf.load(ROOT / "configs" / "optimizer" / f"{config}.yaml")})
    return CTRModule(model, cfg.optimizer).configure_optimizers()


def test_ftrl_config_trains_everything_with_ftrl(tiny_feature_map):
    model = FM(tiny_feature_map, embedding_dim=4, embedding_init_std=1e-2)
    (opt,) = optimizers_for("ftrl", model)
    assert type(opt) is FTRL and 1e-2 <= opt.defaults["lr"] <= 1e-1
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}


def test_gftrl_ftrl_config_splits_embedding_and_dense(tiny_feature_map):
    model = XDeepInt(
        tiny_feature_map, embedding_dim=4, embedding_init_std=1e-2, num_layers=2, num_subspaces=2, output_layer="paper"
    )
    opts = {type(o): o for o in optimizers_for("gftrl_ftrl", model)}
    assert set(opts) == {GroupLassoFTRL, FTRL}
    params = {cls: {id(p) for g in o.param_groups for p in g["params"]} for cls, o in opts.items()}
    assert params[GroupLassoFTRL] == {id(model.embedding.table.weight)}
    assert params[FTRL] == {id(p) for p in model.parameter_groups()["dense"]}
    assert opts[GroupLassoFTRL].defaults["lr"] == opts[FTRL].defaults["lr"]
    # one training step through both
    batch = random_batch(tiny_feature_map, 16)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"])
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()]
    for o in opts.values():
        o.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
