"""Sparse embedding updates (issue 16): LazyAdam and RowWiseAdagrad against a direct per-row computation, FTRL /
G-FTRL on sparse gradients against their dense path, the `optimizer.sparse_embedding` switch and its checks,
and one training step of CTRModule with optimizer=adam_sparse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from ctrlab.data.cache import SplitArrays
from ctrlab.data.datamodule import BatchLoader
from ctrlab.lit.module import CTRModule
from ctrlab.models.deepfm import DeepFM
from ctrlab.optim import FTRL, GroupLassoFTRL, LazyAdam, RowWiseAdagrad
from tests.helpers import ROOT

V, D = 9, 3
# the rows each step looks up, with repeats (a row looked up twice gets the sum of both gradients)
LOOKUPS = [[0, 2, 2, 5], [2, 7, 7, 7, 1], [5, 0, 8]]


def sparse_steps(opt_cls, **kw) -> tuple[torch.nn.Embedding, torch.optim.Optimizer, list[torch.Tensor]]:
    """Runs LOOKUPS through nn.Embedding(sparse=True) with loss sum(emb * c) for a fixed c per lookup; returns
    the table, the optimizer and each step's dense gradient (the reference's input)."""
    torch.manual_seed(0)
    table = torch.nn.Embedding(V, D, sparse=True).double()
    opt = opt_cls(table.parameters(), **kw)
    dense_grads = []
    for step, rows in enumerate(LOOKUPS):
        c = torch.linspace(-1.0, 1.0, len(rows) * D, dtype=torch.float64).view(len(rows), D) * (step + 1)
        table.zero_grad(set_to_none=True)
        (table(torch.tensor(rows)) * c).sum().backward()
        assert table.weight.grad.is_sparse
        dense_grads.append(table.weight.grad.to_dense())
        opt.step()
    return table, opt, dense_grads


def test_lazy_adam_equals_adam_on_touched_rows_and_leaves_the_others_alone():
    lr, (b1, b2), eps = 0.1, (0.9, 0.99), 1e-6
    torch.manual_seed(0)
    w = torch.nn.Embedding(V, D).double().weight.detach().clone()
    table, opt, grads = sparse_steps(LazyAdam, lr=lr, betas=(b1, b2), eps=eps)
    # reference: the per-row Adam formula, row by row, only for the rows a step touched
    m, v = torch.zeros(V, D, dtype=torch.float64), torch.zeros(V, D, dtype=torch.float64)
    for t, (rows, g) in enumerate(zip(LOOKUPS, grads, strict=True), start=1):
        for r in sorted(set(rows)):
            m[r] = b1 * m[r] + (1 - b1) * g[r]
            v[r] = b2 * v[r] + (1 - b2) * g[r] ** 2
            w[r] = w[r] - lr / (1 - b1**t) * m[r] / (v[r].sqrt() / math.sqrt(1 - b2**t) + eps)
    torch.testing.assert_close(table.weight.detach(), w, rtol=1e-12, atol=1e-12)
    state = opt.state[table.weight]
    torch.testing.assert_close(state["exp_avg"], m, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state["exp_avg_sq"], v, rtol=1e-12, atol=1e-12)
    never = [r for r in range(V) if all(r not in rows for rows in LOOKUPS)]  # rows 3, 4, 6
    assert never and not state["exp_avg"][never].any() and not state["exp_avg_sq"][never].any()


def test_lazy_adam_is_adam_when_every_row_is_touched():
    torch.manual_seed(0)
    a = torch.nn.Embedding(4, D, sparse=True).double()
    b = torch.nn.Embedding(4, D).double()
    b.load_state_dict(a.state_dict())
    opts = [LazyAdam(a.parameters(), lr=0.05), torch.optim.Adam(b.parameters(), lr=0.05)]
    for step in range(3):
        ids = torch.tensor([3, 0, 1, 2, 1])
        for table, opt in zip((a, b), opts, strict=True):
            opt.zero_grad()
            (table(ids) ** 2 * (step + 1)).sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-12, atol=1e-12)


def test_row_wise_adagrad_per_row_reference():
    lr, eps, g0 = 0.3, 1e-6, 0.1
    torch.manual_seed(0)
    w = torch.nn.Embedding(V, D).double().weight.detach().clone()
    table, opt, grads = sparse_steps(RowWiseAdagrad, lr=lr, eps=eps, initial_accumulator_value=g0)
    acc = torch.full((V,), g0, dtype=torch.float64)
    for rows, g in zip(LOOKUPS, grads, strict=True):
        for r in sorted(set(rows)):
            acc[r] += (g[r] ** 2).mean()
            w[r] = w[r] - lr * g[r] / (acc[r].sqrt() + eps)
    torch.testing.assert_close(table.weight.detach(), w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(opt.state[table.weight]["sum"], acc, rtol=1e-12, atol=1e-12)
    assert (opt.state[table.weight]["sum"][[3, 4, 6]] == g0).all()


@pytest.mark.parametrize("cls", [FTRL, GroupLassoFTRL])
@pytest.mark.parametrize("warm_start", [True, False])
def test_ftrl_on_sparse_gradients_equals_its_dense_path(cls, warm_start):
    """Per coordinate (FTRL) or per row (G-FTRL: the group is the row), the rows without gradient are left alone
    by the dense path, so the sparse path, which never visits them, must give the same weights and state."""
    kw = dict(lr=0.5, beta=1.0, l1=0.05, l2=0.1, warm_start=warm_start)
    table, opt, grads = sparse_steps(cls, **kw)
    torch.manual_seed(0)
    dense = torch.nn.Embedding(V, D).double()
    ref = cls(dense.parameters(), **kw)
    for g in grads:
        dense.weight.grad = g
        ref.step()
    torch.testing.assert_close(table.weight, dense.weight, rtol=1e-12, atol=1e-12)
    for key in ("n", "z"):
        torch.testing.assert_close(opt.state[table.weight][key], ref.state[dense.weight][key], rtol=1e-12, atol=1e-12)


def test_sparse_only_optimizers_reject_dense_gradients():
    p = torch.nn.Parameter(torch.zeros(3, 2))
    p.grad = torch.ones(3, 2)
    for cls in (LazyAdam, RowWiseAdagrad):
        with pytest.raises(RuntimeError, match="optimizer.sparse_embedding=true"):
            cls([p]).step()


def optimizer_cfg(name: str, **changes) -> dict:
    cfg = OmegaConf.create({"optimizer": OmegaConf.load(ROOT / "configs" / "optimizer" / f"{name}.yaml")})
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return OmegaConf.to_container(cfg.optimizer, resolve=True)


def deepfm(fm) -> DeepFM:
    return DeepFM(fm, embedding_dim=4, embedding_init_std=1e-2, mlp_hidden=[8], mlp_dropout=0.0, mlp_norm="none")


def test_switch_and_optimizer_must_agree(tiny_feature_map):
    with pytest.raises(ValueError, match=r"optimizer.sparse_embedding=true .* Adam .* use one of"):
        CTRModule(deepfm(tiny_feature_map), optimizer_cfg("adam_l2", **{
            "optimizer.sparse_embedding": True, "optimizer.families.embedding": {
                "_target_": "torch.optim.Adam", "_partial_": True}})).configure_optimizers()  # fmt: skip
    with pytest.raises(ValueError, match=r"LazyAdam, which needs sparse gradients"):
        CTRModule(deepfm(tiny_feature_map), optimizer_cfg("adam_sparse", **{"optimizer.sparse_embedding": False})
                  ).configure_optimizers()  # fmt: skip
    with pytest.raises(ValueError, match=r"needs an optimizer.families.embedding entry"):
        CTRModule(deepfm(tiny_feature_map), optimizer_cfg("ftrl", **{"optimizer.sparse_embedding": True})
                  ).configure_optimizers()  # fmt: skip


def test_ctr_module_trains_one_step_with_adam_sparse(tiny_feature_map):
    model = deepfm(tiny_feature_map)
    module = CTRModule(model, optimizer_cfg("adam_sparse"))
    rng = np.random.default_rng(0)
    ids = np.stack([rng.integers(1, 3, 16) for _ in tiny_feature_map.vocab_sizes], axis=1).astype(np.int32)
    train = SplitArrays(ids, rng.integers(0, 2, 16).astype(np.float32))

    class Data(pl.LightningDataModule):
        def train_dataloader(self) -> BatchLoader:
            return BatchLoader(train, 16, shuffle=False)

    tables = [model.embedding.table, model.linear.weights.table]
    before = [t.weight.detach().clone() for t in tables]
    mlp_before = [p.detach().clone() for p in model.mlp.parameters()]
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=Data())
    assert all(t.sparse for t in tables)
    opts = module._optimizer_list()
    assert [type(o.optimizer) for o in opts] == [LazyAdam, torch.optim.Adam]
    offsets = torch.as_tensor(tiny_feature_map.offsets)
    looked_up = torch.zeros(tables[0].num_embeddings, dtype=torch.bool)
    looked_up[(torch.from_numpy(ids).long() + offsets).unique()] = True
    for table, w0 in zip(tables, before, strict=True):
        changed = (table.weight.detach() != w0).any(dim=1)
        assert changed[looked_up].all() and not changed[~looked_up].any()
    assert all(not torch.equal(p, p0) for p, p0 in zip(model.mlp.parameters(), mlp_before, strict=True))
