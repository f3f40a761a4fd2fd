"""The training module's contract: chosen by config, self-describing checkpoints (``load_model``), and extra
loss terms from the ``regularization(batch, output)`` hook with the same values as before the hook."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics.functional.classification import binary_auroc

from ctrlab.data.datamodule import BatchLoader, CTRDataModule
from ctrlab.data.schema import FeatureMap
from ctrlab.lit.module import CTRModule, load_model, training_loss
from ctrlab.models.dynint import DynIntDGP, DynIntDWP
from ctrlab.nn.polynomial import split_subspaces
from ctrlab.train import train
from tests.helpers import random_batch
from tests.test_train import FAST, make_cfg

PIN_SMALL = ["model.embedding_dim=4", "model.num_subspaces=2", "model.num_layers=2"]


class RecordingModule(CTRModule):
    """A CTRModule that records that train.py built it from ``cfg.module``."""

    built: list[RecordingModule] = []

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        RecordingModule.built.append(self)


def test_the_module_is_the_configs_choice(tmp_path):
    RecordingModule.built.clear()
    metrics = train(make_cfg(tmp_path, [*FAST, "trainer.max_epochs=1", f"module._target_={__name__}.RecordingModule"]))
    assert metrics["status"] == "completed" and len(RecordingModule.built) == 1
    described = RecordingModule.built[0].hparams
    assert described["config"]["module"]["_target_"].endswith("RecordingModule")
    assert described["config"]["model"]["_target_"] == "ctrlab.models.deepfm.DeepFM"


def _first_batches(cfg, n: int) -> tuple[FeatureMap, dict[str, torch.Tensor]]:
    """The feature map and the first ``n`` validation batches of a run's data, concatenated (rebuilt from its cache)."""
    dm = CTRDataModule(
        instantiate(cfg.data.source), cfg.paths.cache_dir, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed
    )
    dm.prepare_data()
    dm.setup()
    loader = BatchLoader(dm.splits["valid"], cfg.data.eval_batch_size, shuffle=False)
    rows = np.arange(min(len(dm.splits["valid"]), n * cfg.data.eval_batch_size))
    return dm.feature_map, loader.batch(rows)


def test_load_model_from_last_checkpoint_alone_predicts_as_the_module_did(tmp_path):
    # DWP: the model with a training-time auxiliary output and a per-instance penalty
    cfg = make_cfg(tmp_path, ["debug=smoke", "data.num_rows=3000", "model=dynint_dwp", *PIN_SMALL])
    metrics = train(cfg)  # one epoch, one validation: last.ckpt holds the weights val/* was measured with
    alone = tmp_path / "alone.ckpt"
    shutil.copy(tmp_path / "run" / "checkpoints" / "last.ckpt", alone)
    shutil.rmtree(tmp_path / "run")  # no config_resolved.yaml, no logs: the checkpoint alone
    model = load_model(alone)
    assert type(model) is DynIntDWP and not model.training

    fm, batch = _first_batches(cfg, cfg.trainer.limit_val_batches)
    described = torch.load(alone, weights_only=True)["hyper_parameters"]
    assert FeatureMap.from_dict(described["feature_map"]) == fm
    with torch.no_grad():
        logits = model(batch)
    logloss = F.binary_cross_entropy_with_logits(logits, batch["label"]).item()
    auc = binary_auroc(torch.sigmoid(logits), batch["label"].long()).item()
    assert logloss == pytest.approx(metrics["val/logloss"], rel=1e-5)
    assert auc == pytest.approx(metrics["val/auc"], rel=1e-5)


def test_regularization_terms_are_logged_by_name(tmp_path):
    train(
        make_cfg(
            tmp_path,
            ["debug=smoke", "data.num_rows=3000", "model=dynint_dgp", *PIN_SMALL, "trainer.log_every_n_steps=1"],
        )
    )
    header = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/reg/orthogonal" in header and "train/loss" in header


def test_load_model_rejects_a_checkpoint_that_does_not_describe_its_model(tmp_path):
    path = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"optimizer": {}, "config": None, "feature_map": None}}, path)
    with pytest.raises(ValueError, match="does not describe its model"):
        load_model(path)


# --- the loss of the models with a penalty, against its value before the hook (eqs. 11-12 written out) ------


def _abs_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b / (a.norm() * b.norm())).abs()


def _pairs(vectors: torch.Tensor) -> torch.Tensor:
    """sum_{p>q} |cos(vectors[p], vectors[q])| by a double loop over the K rows of [K, N]."""
    k = len(vectors)
    return sum(_abs_cos(vectors[p], vectors[q]) for p in range(k) for q in range(p))


def _loss_before_the_hook(model, batch) -> torch.Tensor:
    """BCE of ``forward`` + ortho_lambda * sum_l penalty_l, as the loss was computed before the hook: DGP's
    over the static columns of U_l, V_l (eq. 11), DWP's per instance over (u, v) averaged over the batch (eq. 12)."""
    bce = F.binary_cross_entropy_with_logits(model(batch), batch["label"])
    x0 = split_subspaces(model.embedding(batch), model.num_subspaces)
    penalty = 0.0
    for layer in model.layers:
        if isinstance(model, DynIntDGP):
            penalty += _pairs(layer.u.t()) + _pairs(layer.v.t())
        else:
            u, v = layer.factors(x0)  # [B, K, F']
            penalty += sum(_pairs(u[i]) + _pairs(v[i]) for i in range(len(u))) / len(u)
    return bce + model.ortho_lambda * penalty


@pytest.mark.parametrize("name", ["dgp", "dwp"])
def test_loss_with_the_hook_equals_the_loss_before(name, tiny_feature_map):
    torch.manual_seed(0)
    common = dict(
        embedding_dim=4,
        embedding_init_std=0.5,
        num_layers=3,
        num_subspaces=2,
        output_layer="paper",
        reduction_ratio=2,
        ortho_lambda=0.5,
    )  # a large λ, so the penalty is a visible part of the loss
    if name == "dgp":
        model = DynIntDGP(tiny_feature_map, kernel_size=4, **common)
        for layer in model.layers:  # off the orthogonal start, where eq. 11 is 0
            torch.nn.init.normal_(layer.u)
            torch.nn.init.normal_(layer.v)
    else:
        model = DynIntDWP(tiny_feature_map, rank=3, **common)
        for layer in model.layers:  # per-instance factors that differ
            torch.nn.init.normal_(layer.factor_net[2].weight)
    batch = random_batch(tiny_feature_map, 6)
    bce, terms = training_loss(model, batch)
    assert set(terms) == {"orthogonal"} and terms["orthogonal"] > 0.1 * bce
    torch.testing.assert_close(bce + sum(terms.values()), _loss_before_the_hook(model, batch))


@pytest.mark.parametrize("num_layers", [0, 2])
def test_dwp_training_forward_is_its_inference_forward(num_layers, tiny_feature_map):
    # DynIntDWP.forward_train repeats PINModel.forward to keep the factors: the two must stay the same function
    torch.manual_seed(0)
    model = DynIntDWP(
        tiny_feature_map,
        embedding_dim=4,
        embedding_init_std=0.5,
        num_layers=num_layers,
        num_subspaces=2,
        output_layer="paper",
        reduction_ratio=2,
        rank=2,
        ortho_lambda=0.1,
    )
    batch = random_batch(tiny_feature_map, 5)
    output = model.forward_train(batch)
    torch.testing.assert_close(output.logits, model(batch))
    assert sorted(output.aux) == sorted(f"{uv}{i}" for uv in "uv" for i in range(num_layers))
    assert all(t.shape == (5, 2, 10) for t in output.aux.values())  # [B, K, F'], F' = 5 fields * 2 sub-spaces
