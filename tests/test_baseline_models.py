"""FwFM, FmFM, FFM, HOFM, AFM, NFM, IPNN, OPNN, PNN and PIN: shapes and parameter groups, learning the
planted pairs better than LR, and every config instantiable the way ``ctrlab.train`` does it."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ctrlab.models.factorization import AFM, FFM, HOFM, NFM, FmFM, FwFM
from ctrlab.models.lr import LR
from ctrlab.models.pnn import PNN, ProductNetworkInNetwork
from tests.helpers import ROOT, fit_and_auc, random_batch

KEYS = ["fwfm", "fmfm", "ffm", "hofm", "afm", "nfm", "ipnn", "opnn", "pnn", "pin"]
E = dict(embedding_dim=8, embedding_init_std=1e-4)
MLP_ARGS = dict(mlp_hidden=[32, 32], mlp_dropout=0.0, mlp_norm="none")


def build(name: str, fm):
    """Small versions of each model, so that a learning test takes a few seconds on one core."""
    return {
        "fwfm": lambda: FwFM(fm, **E),
        "fmfm": lambda: FmFM(fm, **E),
        "ffm": lambda: FFM(fm, embedding_dim=4, embedding_init_std=1e-4),
        "hofm": lambda: HOFM(fm, **E, order=3),
        # AFM's softmax averages the P pair products, so from a 1e-4 start its signal is ~P times weaker
        # than FM's; a 1e-2 start lets it learn within four epochs
        "afm": lambda: AFM(fm, embedding_dim=8, embedding_init_std=1e-2, attention_dim=8, interaction_dropout=0.0),
        "nfm": lambda: NFM(fm, **E, interaction_dropout=0.0, **MLP_ARGS),
        "ipnn": lambda: PNN(fm, **E, inner_product=True, outer_product=False, **MLP_ARGS),
        "opnn": lambda: PNN(fm, **E, inner_product=False, outer_product=True, **MLP_ARGS),
        "pnn": lambda: PNN(fm, **E, inner_product=True, outer_product=True, **MLP_ARGS),
        # micro-networks on 1e-4 embeddings start out near-constant; a 1e-2 start learns in three epochs
        "pin": lambda: ProductNetworkInNetwork(
            fm, embedding_dim=8, embedding_init_std=1e-2, subnet_hidden=[8, 4], subnet_norm="none", **MLP_ARGS
        ),
    }[name]()


def check_forward_and_groups(model, fm) -> None:
    assert model(random_batch(fm, 7, values=True)).shape == (7,)
    groups = model.parameter_groups()
    assert "embedding" in groups
    assert sum(p.numel() for ps in groups.values() for p in ps) == model.num_parameters()


@pytest.mark.parametrize("name", KEYS)
def test_forward_shape_and_groups(name, tiny_feature_map):
    check_forward_and_groups(build(name, tiny_feature_map), tiny_feature_map)


@pytest.mark.parametrize("key", KEYS)
def test_config_instantiates(key, tiny_feature_map):
    cfg = OmegaConf.load(ROOT / "configs" / "model" / f"{key}.yaml")
    check_forward_and_groups(instantiate(cfg, _partial_=True)(feature_map=tiny_feature_map), tiny_feature_map)


@pytest.fixture(scope="module")
def lr_auc(synthetic_pairs):
    fm, splits = synthetic_pairs
    return fit_and_auc(LR(fm), splits, lr=1e-2)  # ~0.640, as in tests/test_models_basic.py


# (name, AUC margin over LR, epochs, learning rate). AUCs seen with seed 0 (LR 0.640): FwFM 0.748,
# FmFM 0.737, FFM 0.732, HOFM 0.696, AFM 0.693, NFM 0.687, IPNN 0.753, OPNN 0.689, PNN 0.713, PIN 0.740;
# with seeds 1 and 2 every model stays at least 0.013 above its margin. OPNN's sum-pooled outer product is
# one bilinear form shared by all pairs (pair identity is lost), so it learns the planted pairs more slowly.
LEARNING = [
    ("fwfm", 0.06, 3, 1e-2),
    ("fmfm", 0.06, 3, 1e-2),
    ("ffm", 0.06, 3, 1e-2),
    ("hofm", 0.03, 3, 1e-2),
    ("afm", 0.03, 4, 1e-2),
    ("nfm", 0.03, 3, 1e-2),
    ("ipnn", 0.06, 3, 1e-2),
    ("opnn", 0.03, 5, 1e-2),
    ("pnn", 0.03, 3, 1e-2),
    ("pin", 0.06, 3, 2e-2),
]


@pytest.mark.parametrize("name,margin,epochs,lr", LEARNING)
def test_learns_planted_pairs_better_than_lr(name, margin, epochs, lr, synthetic_pairs, lr_auc):
    fm, splits = synthetic_pairs
    torch.manual_seed(0)  # the initial weights too, so the AUC does not depend on which tests ran before
    auc = fit_and_auc(build(name, fm), splits, epochs=epochs, lr=lr)
    assert auc > lr_auc + margin, f"{name}: AUC {auc:.4f} vs LR {lr_auc:.4f}"
