"""``CTRModule``: wraps any ``CTRModel`` for training, validation and test (docs/architecture.md, "Module contract").

Its checkpoints describe themselves: the run's resolved config and the feature map travel in the checkpoint's
``hyper_parameters``, so ``load_model(ckpt_path)`` rebuilds the trained model from the checkpoint alone.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC
from torchmetrics.utilities import dim_zero_cat

from ctrlab.data.schema import FeatureMap
from ctrlab.data.sequences import user_column
from ctrlab.lit.behaviour_groups import GROUPS, behaviour_groups, group_columns
from ctrlab.lit.gauc import GroupAUC
from ctrlab.models.base import CTRModel
from ctrlab.optim.sparse import check_sparse_embedding
from ctrlab.search.artifact import is_artifact_path, load_artifact


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; raised before the optimizer step, so the weights are intact."""


def training_loss(model: CTRModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The BCE-with-logits of one batch (a mean) and the model's named extra terms; the loss is their sum."""
    output = model.forward_train(batch)
    bce = F.binary_cross_entropy_with_logits(output.logits, batch["label"])
    return bce, model.regularization(batch, output)


def _plain(cfg: DictConfig | dict | None) -> dict | None:
    """A config as plain Python containers, so the checkpoint loads with ``torch.load(weights_only=True)``."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class CTRModule(pl.LightningModule):
    """BCE-with-logits + ``model.regularization(batch, output)``; AUC and log loss on valid and test, and GAUC
    (``lit/gauc.py``) where the data identifies the user (behaviour-sequence data, ``user_column``), and there
    also the AUC of each of KFAtt's test groups (``<stage>/auc_new``, ``<stage>/auc_infreq``;
    ``lit/behaviour_groups.py``): DPN Table 5's columns from one run. A group without both labels scores NaN.

    Optimisation is manual so that one code path serves one optimizer or several: each parameter family
    named in ``optimizer.families`` (``embedding``, ``dense``, ``arch``) gets its own optimizer, and every
    family not named there shares the one built from ``families.default``.

    ``config`` (the run's resolved config) and ``feature_map`` are stored, not used: they make a checkpoint
    enough to rebuild its model (``load_model``).
    """

    def __init__(
        self,
        model: CTRModel,
        optimizer: DictConfig | dict,
        config: DictConfig | dict | None = None,
        feature_map: FeatureMap | None = None,
    ) -> None:
        super().__init__()
        # the model's weights are in the state dict; everything else that describes the run is plain data.
        # Not sent to the loggers: train.py writes the config itself, and the feature map is no hyper-parameter.
        self.save_hyperparameters(
            {
                "optimizer": _plain(optimizer),
                "config": _plain(config),
                "feature_map": feature_map.to_dict() if feature_map is not None else None,
            },
            logger=False,
        )
        self.automatic_optimization = False
        self.model = model
        # under DDP each rank scores its shard of the eval split (CTRDataModule); compute() gathers the shards:
        # AUROC's and GAUC's scores and labels are concatenated, the log loss's sum and count are summed
        for stage in ("val", "test"):
            setattr(self, f"{stage}_auc", BinaryAUROC())
            setattr(self, f"{stage}_logloss", MeanMetric())
        # GAUC groups by the user id; an OOV or missing id stands for several users and is left out
        self.user_column = user_column(feature_map) if feature_map is not None else None
        if self.user_column is not None:
            self.user_oov = feature_map.scalar_fields[self.user_column].oov_id
            for stage in ("val", "test"):
                setattr(self, f"{stage}_gauc", GroupAUC())
        self.group_columns = group_columns(feature_map) if feature_map is not None else None
        if self.group_columns is not None:  # synced across ranks, as the other metrics (sharded evaluation)
            self.group_auc = nn.ModuleDict(
                {f"{stage}_{name}": BinaryAUROC() for stage in ("val", "test") for name in GROUPS}
            )
        self.samples_seen = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        families = self.hparams.optimizer["families"]
        if "default" not in families:
            raise ValueError(f"optimizer.families must have a `default` entry; it has {list(families)}")
        params: dict[str, list[torch.nn.Parameter]] = {}
        for family, ps in self.model.parameter_groups().items():
            params.setdefault(family if family in families else "default", []).extend(ps)
        self.optimizer_families = list(params)  # the family of each optimizer, in order (bi-level search steps one)
        sparse = bool(self.hparams.optimizer.get("sparse_embedding", False))
        if sparse:
            self._sparse_embedding_gradients(params, families)
        optimizers = [instantiate(families[name])(ps) for name, ps in params.items()]
        for name, opt in zip(params, optimizers, strict=True):
            check_sparse_embedding(sparse, name, opt)
        return optimizers

    def _sparse_embedding_gradients(self, params: dict[str, list[torch.nn.Parameter]], families: dict) -> None:
        """``optimizer.sparse_embedding=true``: every table of the ``embedding`` family returns a sparse gradient
        (its looked-up rows only), which the family's optimizer then updates row by row (ctrlab/optim/sparse.py)."""
        if "embedding" not in families:
            raise ValueError(
                "optimizer.sparse_embedding=true needs an optimizer.families.embedding entry (a sparse-capable "
                f"optimizer for the tables); the families are {list(families)}"
            )
        tables = {id(p) for p in params.get("embedding", [])}
        for m in self.model.modules():
            if isinstance(m, torch.nn.Embedding) and id(m.weight) in tables:
                m.sparse = True

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, bce, terms = self._descend(batch, self._optimizer_list())
        self.samples_seen += len(batch["label"])
        self.log("train/loss", bce, prog_bar=True, on_step=True, on_epoch=False)
        for name, term in terms.items():
            self.log(f"train/reg/{name}", term, on_step=True, on_epoch=False)
        return loss

    def _optimizer_list(self) -> list[pl.core.optimizer.LightningOptimizer]:
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def _descend(
        self, batch: dict[str, torch.Tensor], optimizers: list[pl.core.optimizer.LightningOptimizer]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One gradient step of ``optimizers`` on this batch's loss; returns (loss, bce, extra terms)."""
        bce, terms = training_loss(self.model, batch)
        loss = bce + sum(terms.values())
        if not torch.isfinite(loss):
            parts = ", ".join(f"{name} {t.item()}" for name, t in {"bce": bce, **terms}.items())
            raise NonFiniteLossError(
                f"training loss is {loss.item()} ({parts}) at global step {self.global_step} "
                f"(epoch {self.current_epoch}); try a lower learning rate or stronger regularisation"
            )
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for opt in optimizers:
            opt.step()
        return loss, bce, terms

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        logits = self.model(batch).float()  # bfloat16 under trainer.precision=bf16-mixed: score in float32
        label = batch["label"]
        getattr(self, f"{stage}_auc").update(torch.sigmoid(logits), label.long())
        if self.user_column is not None:
            user = batch["ids"][:, self.user_column]
            known = (user > 0) & (user != self.user_oov)
            getattr(self, f"{stage}_gauc").update(user[known], logits[known], label[known])
        if self.group_columns is not None:
            column, bag = self.group_columns
            for name, rows in behaviour_groups(batch["ids"][:, column], batch["bag_ids"][:, bag]).items():
                self.group_auc[f"{stage}_{name}"].update(torch.sigmoid(logits[rows]), label[rows].long())
        bce = F.binary_cross_entropy_with_logits(logits, label, reduction="none")
        getattr(self, f"{stage}_logloss").update(bce)

    def _eval_epoch_end(self, stage: str) -> dict[str, torch.Tensor]:
        auc, logloss = getattr(self, f"{stage}_auc"), getattr(self, f"{stage}_logloss")
        auc_value, logloss_value = auc.compute(), logloss.compute()
        self.log(f"{stage}/auc", auc_value, prog_bar=True)
        self.log(f"{stage}/logloss", logloss_value, prog_bar=True)
        # FuxiCTR's default early-stopping score: one number that punishes a run whose AUC holds while its
        # calibration drifts (`monitor: auc_minus_logloss`)
        self.log(f"{stage}/auc_minus_logloss", auc_value - logloss_value)
        auc.reset()
        logloss.reset()
        values = {f"{stage}/auc": auc_value, f"{stage}/logloss": logloss_value,
                  f"{stage}/auc_minus_logloss": auc_value - logloss_value}  # fmt: skip
        if self.user_column is not None:
            gauc = getattr(self, f"{stage}_gauc")
            values[f"{stage}/gauc"] = gauc.compute()
            self.log(f"{stage}/gauc", values[f"{stage}/gauc"], prog_bar=True)
            gauc.reset()
        if self.group_columns is not None:
            for name in GROUPS:
                metric = self.group_auc[f"{stage}_{name}"]
                labels = dim_zero_cat(metric.target) if metric.target else torch.zeros(0)
                both = 0 < labels.sum() < labels.numel()  # an AUC needs a click and a non-click
                values[f"{stage}/auc_{name}"] = metric.compute() if both else torch.tensor(float("nan"))
                self.log(f"{stage}/auc_{name}", values[f"{stage}/auc_{name}"])
                metric.reset()
        return values

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["samples_seen"] = self.samples_seen

    def stage_metrics(self, trainer: pl.Trainer, datamodule: pl.LightningDataModule, test: bool) -> dict[str, Any]:
        """What this stage adds to ``metrics.json`` after the best checkpoint is scored (train.py calls it last):
        nothing here; a search module adds its artifact and "without re-train" scores, a re-train module what
        its architecture kept."""
        return {}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.samples_seen = checkpoint.get("samples_seen", 0)


def build_model(model_cfg: DictConfig | dict, feature_map: FeatureMap) -> CTRModel:
    """The model of a model config on this data. A ``model.architecture`` that names an architecture artifact
    (``*.json``) is read and checked against the data's fields (``load_artifact``) and the model receives its
    decisions, and its raw weights when it takes ``architecture_weights``; an option name (``memorize``) or null
    goes through as it is."""
    build = instantiate(model_cfg, _partial_=True)  # partial: a dataclass kwarg would become a DictConfig
    architecture = model_cfg.get("architecture")
    if not is_artifact_path(architecture):
        return build(feature_map=feature_map)
    artifact = load_artifact(architecture, feature_map)
    takes_weights = "architecture_weights" in inspect.signature(build).parameters  # AIM / AutoFIS orders 3-4
    weights = {"architecture_weights": artifact.weights()} if takes_weights else {}
    return build(feature_map=feature_map, architecture=artifact.decisions(), **weights)


def load_model(ckpt_path: str | Path) -> CTRModel:
    """The trained model of a ``CTRModule`` checkpoint, rebuilt from the checkpoint alone, on CPU, in eval mode:
    the model config and feature map stored in it, then its weights."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    described = ckpt.get("hyper_parameters") or {}
    if described.get("config") is None or described.get("feature_map") is None:
        raise ValueError(
            f"checkpoint {ckpt_path} does not describe its model (no `config` / `feature_map` in its "
            "hyper_parameters): it was written by a CTRModule built without them, not by ctrlab.train"
        )
    feature_map = FeatureMap.from_dict(described["feature_map"])
    model = build_model(described["config"]["model"], feature_map)
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights)
    return model.eval()
