"""``CTRModule``: wraps any ``CTRModel`` for training, validation and test (DESIGN §5)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC

from ctrlab.models.base import CTRModel


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; raised before the optimizer step, so the weights are intact."""


class CTRModule(pl.LightningModule):
    """BCE-with-logits + ``model.regularization()``; AUC and log loss on valid and test.

    Optimisation is manual so that one code path serves one optimizer or several: each parameter family
    named in ``optimizer.families`` (``embedding``, ``dense``, ``arch``) gets its own optimizer, and every
    family not named there shares the one built from ``families.default``.
    """

    def __init__(self, model: CTRModel, optimizer: DictConfig) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.optimizer_cfg = optimizer
        # every rank scores the whole eval split (see CTRDataModule), so no cross-rank sync is needed
        for stage in ("val", "test"):
            setattr(self, f"{stage}_auc", BinaryAUROC(sync_on_compute=False))
            setattr(self, f"{stage}_logloss", MeanMetric(sync_on_compute=False))
        self.samples_seen = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        families = self.optimizer_cfg.families
        if "default" not in families:
            raise ValueError(f"optimizer.families must have a `default` entry; it has {list(families)}")
        params: dict[str, list[torch.nn.Parameter]] = {}
        for family, ps in self.model.parameter_groups().items():
            params.setdefault(family if family in families else "default", []).extend(ps)
        return [instantiate(families[name])(ps) for name, ps in params.items()]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch)
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"])
        loss = bce + self.model.regularization()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at global step {self.global_step} (epoch {self.current_epoch}); "
                "try a lower learning rate or stronger regularisation"
            )
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for opt in optimizers:
            opt.step()
        self.samples_seen += len(batch["label"])
        self.log("train/loss", bce, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        logits = self.model(batch)
        label = batch["label"]
        getattr(self, f"{stage}_auc").update(torch.sigmoid(logits), label.long())
        bce = F.binary_cross_entropy_with_logits(logits, label, reduction="none")
        getattr(self, f"{stage}_logloss").update(bce)

    def _eval_epoch_end(self, stage: str) -> None:
        auc, logloss = getattr(self, f"{stage}_auc"), getattr(self, f"{stage}_logloss")
        self.log(f"{stage}/auc", auc.compute(), prog_bar=True)
        self.log(f"{stage}/logloss", logloss.compute(), prog_bar=True)
        auc.reset()
        logloss.reset()

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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.samples_seen = checkpoint.get("samples_seen", 0)
