"""AutoFIS on DeepFM: its forward against eq. 12 with eq. 20, the searchable-model hooks (spaces, α in the `arch`
family, derive / fix, re-train from decisions, checked decisions), and the search recovering the planted pairs of
the `interactions` stand-in with Adam + GRDA (AIM's Avazu c, μ) in a plain loop."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ctrlab.lit.module import CTRModule
from ctrlab.models.autofis import AutoFIS
from ctrlab.optim import GRDA
from ctrlab.search.space import SearchableModel
from tests.helpers import ROOT, random_batch, train_epochs


def autofis(feature_map, architecture=None, mlp_hidden=(8,)) -> AutoFIS:
    torch.manual_seed(0)
    return AutoFIS(feature_map, 4, 0.1, list(mlp_hidden) if mlp_hidden else None, 0.0, "none", architecture)


def test_forward_is_deepfm_with_gated_normalised_inner_products(tiny_feature_map):
    model = autofis(tiny_feature_map)
    with torch.no_grad():
        model.gate.alpha.copy_(torch.randn(10))
    batch = random_batch(tiny_feature_map, 32)
    emb = model.embedding(batch)  # [B, F, D]
    terms = []
    for i in range(5):
        for j in range(i + 1, 5):
            z = (emb[:, i] * emb[:, j]).sum(-1)
            terms.append(model.gate.alpha[len(terms)] * (z - z.mean()) / torch.sqrt(z.var(unbiased=False) + 1e-3))
    slow = model.linear(batch) + torch.stack(terms).sum(0) + model.mlp(emb.flatten(1)).squeeze(-1)
    torch.testing.assert_close(model(batch), slow)


def test_search_hooks(tiny_feature_map):
    model = autofis(tiny_feature_map)
    assert isinstance(model, SearchableModel)
    (space,) = model.search_spaces()
    assert space.name == "interaction" and space.units[:2] == ("f0×f1", "f0×f2") and len(space.units) == 10
    groups = model.parameter_groups()
    assert groups["arch"] == [model.gate.alpha] and all(p is not model.gate.alpha for p in groups["dense"])
    with torch.no_grad():
        model.gate.alpha[[1, 4]] = 0.0
    decisions = model.derive()
    assert decisions["interaction"][1] == "drop" and decisions["interaction"].count("keep") == 8
    assert model.architecture_weights()["interaction"].shape == (10,)
    batch = random_batch(tiny_feature_map, 16)
    model.eval()
    before = model(batch)
    decisions["interaction"][0] = "drop"  # fix() drops pair 0 although its α is not zero
    model.fix(decisions)
    emb = model.embedding(batch)
    z = (emb[:, 0] * emb[:, 1]).sum(-1)
    bn = model.gate.norm
    pair0 = model.gate.alpha[0] * (z - bn.running_mean[0]) / torch.sqrt(bn.running_var[0] + 1e-3)
    torch.testing.assert_close(model(batch), before - pair0)


def test_retrain_computes_only_the_kept_pairs(tiny_feature_map):
    keep = ["keep" if u in (0, 3, 9) else "drop" for u in range(10)]
    model = autofis(tiny_feature_map, {"interaction": keep})
    assert model.pairs.tolist() == [[0, 1], [0, 4], [3, 4]] and model.gate.alpha.shape == (3,)
    assert "arch" not in model.parameter_groups()  # the kept gates re-train with the rest
    with pytest.raises(RuntimeError, match="built from an architecture"):
        model.derive()
    assert autofis(tiny_feature_map, "drop").gate is None
    assert autofis(tiny_feature_map, "keep").pairs.shape == (10, 2)
    model(random_batch(tiny_feature_map, 8)).sum().backward()


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        ({"interaction": ["keep"] * 9}, "10 units"),
        ({"functions": ["keep"] * 10}, "space 'interaction'"),
        ({"interaction": ["keep"] * 9 + ["maybe"]}, "unit 'f3×f4': 'maybe'; allowed: keep, drop"),
        ("sometimes", "allowed: keep, drop"),
    ],
)
def test_bad_decisions_name_the_space_unit_and_options(tiny_feature_map, architecture, message):
    with pytest.raises(ValueError, match=message):
        autofis(tiny_feature_map, architecture)


def test_adam_grda_config_trains_alpha_with_grda(tiny_feature_map):
    model = autofis(tiny_feature_map)
    cfg = OmegaConf.create({"optimizer": OmegaConf.load(ROOT / "configs" / "optimizer" / "adam_grda.yaml")})
    opts = CTRModule(model, cfg.optimizer).configure_optimizers()
    grda = [o for o in opts if isinstance(o, GRDA)]
    assert len(grda) == 1 and grda[0].param_groups[0]["params"] == [model.gate.alpha]


def test_search_recovers_the_planted_pairs(synthetic_pairs):
    """The `interactions` stand-in (16 fields, 8 planted pairs of 120): 3 epochs of Adam (lr 3e-3) for the
    weights and GRDA with AIM's Avazu constants (c = 0.05, μ = 0.6, γ = 1 as the authors' scripts) for α keep
    >= 80% of the planted pairs and drop >= 80% of the others (measured: 8/8 kept, 109/112 dropped; seeds 1
    and 2: 8/8 and 104/112, 7/8 and 109/112)."""
    feature_map, splits = synthetic_pairs
    torch.manual_seed(0)
    model = AutoFIS(feature_map, 8, 0.01, [32], 0.0, "none")
    groups = model.parameter_groups()
    opts = [
        torch.optim.Adam(groups["embedding"] + groups["dense"], lr=3e-3),
        GRDA(groups["arch"], lr=1.0, c=0.05, mu=0.6),
    ]
    for _ in train_epochs(model, splits, opts, epochs=3, batch_size=1024):
        pass
    kept = {tuple(p) for p, d in zip(model.pairs.tolist(), model.derive()["interaction"], strict=True) if d == "keep"}
    planted = {tuple(p) for p in feature_map.extra["planted"]["pairs"]}
    others = len(model.pairs) - len(planted)
    assert len(kept & planted) >= 0.8 * len(planted)
    assert others - len(kept - planted) >= 0.8 * others
