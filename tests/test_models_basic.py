"""The foundation's five models: shapes, the DeepFM equation, and learning the planted interactions."""

from __future__ import annotations

import pytest
import torch

from ctrlab.models.deepfm import DeepFM
from ctrlab.models.dnn import DNN
from ctrlab.models.fm import FM
from ctrlab.models.lr import LR
from ctrlab.models.wide_and_deep import WideAndDeep
from tests.helpers import fit_and_auc, random_batch

MLP_ARGS = dict(embedding_dim=8, embedding_init_std=1e-4, mlp_hidden=[64, 64], mlp_dropout=0.0, mlp_norm="none")


def build(name: str, fm):
    return {
        "lr": lambda: LR(fm),
        "fm": lambda: FM(fm, embedding_dim=8, embedding_init_std=1e-4),
        "dnn": lambda: DNN(fm, **MLP_ARGS),
        "wide_and_deep": lambda: WideAndDeep(fm, **MLP_ARGS),
        "deepfm": lambda: DeepFM(fm, **MLP_ARGS),
    }[name]()


@pytest.mark.parametrize("name", ["lr", "fm", "dnn", "wide_and_deep", "deepfm"])
def test_forward_shape_and_groups(name, tiny_feature_map):
    model = build(name, tiny_feature_map)
    assert model(random_batch(tiny_feature_map, 7)).shape == (7,)
    groups = model.parameter_groups()
    assert "embedding" in groups
    assert sum(p.numel() for ps in groups.values() for p in ps) == model.num_parameters()


def test_deepfm_is_linear_plus_fm_plus_mlp(tiny_feature_map):
    model = DeepFM(tiny_feature_map, **{**MLP_ARGS, "embedding_init_std": 0.5})
    batch = random_batch(tiny_feature_map, 4)
    emb = model.embedding(batch)
    pairwise = sum((emb[:, i] * emb[:, j]).sum(-1) for i in range(5) for j in range(i + 1, 5))
    expected = model.linear(batch) + pairwise + model.mlp(emb.flatten(1)).squeeze(-1)
    torch.testing.assert_close(model(batch), expected, rtol=1e-5, atol=1e-5)
    no_dnn = DeepFM(tiny_feature_map, **{**MLP_ARGS, "mlp_hidden": None})
    assert no_dnn.mlp is None


@pytest.fixture(scope="module")
def lr_auc(synthetic_pairs):
    fm, splits = synthetic_pairs
    return fit_and_auc(LR(fm), splits, lr=1e-2)


@pytest.mark.parametrize("name,margin", [("fm", 0.04), ("dnn", 0.01), ("wide_and_deep", 0.01), ("deepfm", 0.04)])
def test_learns_planted_pairs_better_than_lr(name, margin, synthetic_pairs, lr_auc):
    fm, splits = synthetic_pairs
    auc = fit_and_auc(build(name, fm), splits)
    assert auc > lr_auc + margin, f"{name}: AUC {auc:.4f} vs LR {lr_auc:.4f}"
