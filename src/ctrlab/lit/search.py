"""``SearchModule``: the search stage of an architecture search (docs/architecture.md, "Search contract").

It trains a ``SearchableModel``'s weights and its architecture weights (the ``arch`` parameter family, with its
own optimizer from ``optimizer.families.arch``):

- ``mode: joint`` (OptInter Algorithm 1): one loss on a training batch, every optimizer steps on it;
- ``mode: bilevel`` (DARTS, first order; OptInter Table VIII): an architecture step on a batch of the valid
  split, then a weight step on the training batch. The valid batches come from
  ``CTRDataModule.valid_batches_for_search``: the test split is never touched before the final test.

A ``TemperatureSchedule`` callback (added by the module itself) sets the Gumbel-softmax temperature before
each step (OptInter eqs. 16-17). At every validation the module keeps ``derive()`` and the architecture weights
of the best epoch so far (by ``monitor``, a validation metric); at the end of fit it writes them as the
architecture artifact. ``stage_metrics`` then adds "without re-train" (OptInter Table IX): the artifact's
decisions fixed on the search model's own (best-checkpoint) weights, scored on valid and test.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict, Field

from ctrlab.data.schema import FeatureMap
from ctrlab.lit.loggers import StagedCSVLogger
from ctrlab.lit.module import CTRModule, _plain
from ctrlab.models.base import CTRModel
from ctrlab.search.artifact import (
    SCHEMA_VERSION,
    Artifact,
    Provenance,
    file_sha256,
    read_artifact,
    space_record,
    write_artifact,
)
from ctrlab.search.recovery import recovery
from ctrlab.search.space import SearchableModel

log = logging.getLogger("ctrlab.search")


class Temperature(BaseModel):
    """The Gumbel-softmax temperature after ``t`` steps (or epochs, ``interval``):

    - ``linear``: ``max(tau_min, tau0 - rate * t)`` — the OptInter authors' code (tau0 = 1, rate = 5e-5 per
      forward pass, tau_min = 0.01);
    - ``exponential``: ``max(tau_min, tau0 * exp(-rate * t))``;
    - ``constant``: ``tau0``.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    anneal: Literal["constant", "linear", "exponential"] = "linear"
    tau0: float = Field(default=1.0, gt=0.0)
    tau_min: float = Field(default=0.01, gt=0.0)
    rate: float = Field(default=5.0e-5, ge=0.0)
    interval: Literal["step", "epoch"] = "step"

    def at(self, t: int) -> float:
        if self.anneal == "linear":
            return max(self.tau_min, self.tau0 - self.rate * t)
        if self.anneal == "exponential":
            return max(self.tau_min, self.tau0 * math.exp(-self.rate * t))
        return self.tau0


class TemperatureSchedule(pl.Callback):
    """Calls ``model.set_temperature(schedule.at(t))`` before each training batch, ``t`` counting the training
    batches (``interval: step``; not Lightning's ``global_step``, which counts each optimizer's steps) or the
    epochs; logs ``search/tau``. Its counter is in the checkpoint, so a resumed search goes on where it was."""

    def __init__(self, schedule: Temperature) -> None:
        self.schedule = schedule
        self.batches = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        t = self.batches if self.schedule.interval == "step" else trainer.current_epoch
        tau = self.schedule.at(t)
        pl_module.model.set_temperature(tau)
        pl_module.log("search/tau", tau, on_step=True, on_epoch=False)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.batches += 1

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches = state["batches"]


class SearchModule(CTRModule):
    """``CTRModule`` + architecture updates (joint or bi-level), the temperature schedule, the best epoch's
    decisions and the artifact. Keys beyond ``CTRModule``'s: ``mode``, ``temperature``, ``artifact`` (the path
    to write), ``monitor`` / ``monitor_mode`` (the validation metric that picks the epoch; the checkpoint's)."""

    def __init__(
        self,
        model: CTRModel,
        optimizer: DictConfig | dict,
        config: DictConfig | dict | None = None,
        feature_map: FeatureMap | None = None,
        mode: Literal["joint", "bilevel"] = "joint",
        temperature: Temperature | None = None,
        artifact: str = "architecture.json",
        monitor: Literal["val/auc", "val/logloss", "val/auc_minus_logloss"] = "val/auc",
        monitor_mode: Literal["max", "min"] = "max",
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, config=config, feature_map=feature_map)
        if mode not in ("joint", "bilevel"):
            raise ValueError(f"config key `module.mode` = {mode!r}: allowed values are 'joint', 'bilevel'")
        if not isinstance(model, SearchableModel):
            raise TypeError(
                f"module=search needs a searchable model (ctrlab.search.space.SearchableModel); "
                f"{type(model).__name__} has no search_spaces / derive / fix"
            )
        if "arch" not in model.parameter_groups():
            raise ValueError(
                f"{type(model).__name__} has no `arch` parameter family: it was built with a fixed "
                "architecture (model.architecture is set); a search starts from model.architecture=null"
            )
        if "arch" not in self.hparams.optimizer["families"]:
            raise ValueError(
                "module=search needs an optimizer for the architecture weights: config key "
                f"`optimizer.families.arch` is not set (families: {list(self.hparams.optimizer['families'])}); "
                "e.g. optimizer=adam_search"
            )
        self.mode = mode
        plain = _plain(temperature)
        self.temperature = plain if isinstance(plain, Temperature) else Temperature.model_validate(plain or {})
        self.artifact_path = Path(artifact)
        self.monitor, self.monitor_mode = monitor, monitor_mode
        self.best: dict[str, Any] | None = None  # the best validation epoch's decisions, weights and scores
        self._valid_batches = None

    def configure_callbacks(self) -> list[pl.Callback]:
        return [TemperatureSchedule(self.temperature)]

    def on_train_start(self) -> None:
        if self.mode == "bilevel":
            self._valid_batches = self.trainer.datamodule.valid_batches_for_search()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.mode == "joint":
            return super().training_step(batch, batch_idx)
        arch = [o for o, f in zip(self._optimizer_list(), self.optimizer_families, strict=True) if f == "arch"]
        weights = [o for o, f in zip(self._optimizer_list(), self.optimizer_families, strict=True) if f != "arch"]
        valid = {k: v.to(self.device) for k, v in next(self._valid_batches).items()}
        arch_loss, _, _ = self._arch_step(valid, arch)
        # first order: the weight gradients the valid loss left are cleared by the weight step's zero_grad
        loss, bce, terms = self._descend(batch, weights)
        self.samples_seen += len(batch["label"])
        self.log("train/loss", bce, prog_bar=True, on_step=True, on_epoch=False)
        self.log("search/arch_loss", arch_loss, on_step=True, on_epoch=False)
        for name, term in terms.items():
            self.log(f"train/reg/{name}", term, on_step=True, on_epoch=False)
        return loss

    def _arch_step(
        self, batch: dict[str, torch.Tensor], optimizers: list[Any]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One architecture step of a bi-level search, on a batch of the valid split."""
        return self._descend(batch, optimizers)

    def on_validation_epoch_end(self) -> None:
        values = self._eval_epoch_end("val")
        if self.trainer.sanity_checking or self.trainer.state.fn != "fit":
            return  # only the search's own validations pick the epoch; the final scoring of train.py does not
        score = float(values[self.monitor])
        if self.best is not None:
            better = score > self.best["score"] if self.monitor_mode == "max" else score < self.best["score"]
            if not better:
                return
        self.best = {
            "score": score,
            "epoch": self.current_epoch,
            "decisions": self.model.derive(),
            "weights": {k: w.detach().cpu().clone() for k, w in self.model.architecture_weights().items()},
            "val_metrics": {k: float(v) for k, v in values.items()},
        }

    def on_fit_end(self) -> None:
        if self.best is None:
            raise RuntimeError(
                "the search validated no epoch (trainer.limit_val_batches=0?): its architecture is the one of the "
                "best validation epoch, so there is nothing to write"
            )
        if self.trainer.is_global_zero:
            write_artifact(self.artifact_path, self._artifact())
            log.info("architecture of epoch %d written to %s", self.best["epoch"], self.artifact_path)

    def _artifact(self) -> Artifact:
        config = self.hparams.config or {}
        datamodule = self.trainer.datamodule
        fm = datamodule.feature_map
        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
        weights = self.best["weights"]
        return Artifact(
            schema_version=SCHEMA_VERSION,
            spaces=[
                space_record(s, self.best["decisions"][s.name], weights.get(s.name)) for s in self.model.search_spaces()
            ],
            provenance=Provenance(
                kind="search",
                model={"config": choices.get("model"), "target": (config.get("model") or {}).get("_target_")},
                data={
                    "cache": getattr(datamodule, "folder", None) and datamodule.folder.name,
                    "dataset": fm.dataset,
                    "fields": [f.name for f in fm.fields],
                },
                seed=config.get("seed"),
                config=config or None,
                val_metrics=self.best["val_metrics"],
                epoch=self.best["epoch"],
                note=f"{self.mode} search, monitor {self.monitor} ({self.monitor_mode})",
            ),
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["search_best"] = self.best  # a resumed search still knows its best epoch

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.best = checkpoint.get("search_best", self.best)

    def stage_metrics(self, trainer: pl.Trainer, datamodule: pl.LightningDataModule, test: bool) -> dict[str, Any]:
        """The artifact (path, hash, counts, epoch), its planted-truth recovery on a stand-in
        (``ctrlab.search.recovery``), and the "without re-train" scores (OptInter Table IX): the artifact's
        decisions fixed on the weights train.py just scored (the best checkpoint's), as ``without_retrain/val/*``
        and ``without_retrain/test/*``; ``val/*`` and ``test/*`` stay the soft search model's."""
        artifact = read_artifact(self.artifact_path)
        out: dict[str, Any] = {
            "architecture": {
                "path": str(self.artifact_path),
                "sha256": file_sha256(self.artifact_path),
                "epoch": artifact.provenance.epoch,
                "counts": artifact.counts(),
            },
            # on a stand-in with planted kinds per pair: the share of each kind the search recovered
            "recovery": recovery(artifact, datamodule.feature_map),
        }
        self.model.fix(artifact.decisions())
        for logger in trainer.loggers:
            if isinstance(logger, StagedCSVLogger):
                logger.stage = "without_retrain"
        scores = trainer.validate(self, datamodule=datamodule, verbose=False)[0]
        if test:
            scores.update(trainer.test(self, datamodule=datamodule, verbose=False)[0])
        out.update({f"without_retrain/{k}": float(v) for k, v in scores.items()})
        return out
