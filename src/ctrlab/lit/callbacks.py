"""Callbacks that ctrlab adds to Lightning's own."""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

log = logging.getLogger(__name__)


class TrainingThroughput(pl.Callback):
    """Wall time of ``fit`` and training samples per second, for ``metrics.json``."""

    def __init__(self) -> None:
        self.train_time_s = 0.0
        self._start = 0.0
        self._samples_at_start = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._samples_at_start = pl_module.samples_seen

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_time_s = time.perf_counter() - self._start
        self.samples = pl_module.samples_seen - self._samples_at_start

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_time_s if self.train_time_s > 0 else 0.0


class ValidationLog(pl.Callback):
    """One log line per validation during ``fit``, so a run whose output goes to a file shows its progress::

        epoch 0 · step 14 · val AUC 0.7012 · val log loss 0.4412 · 5210 samples/s

    samples/s: training samples since the previous validation over the training time since then (the
    validation's own time left out). Rank zero only; the best checkpoint's validation after ``fit`` is not
    logged here (metrics.json and the multirun's progress line report it).
    """

    def __init__(self) -> None:
        self._since = 0.0  # when the current stretch of training began
        self._samples_since = 0
        self._rate = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since, self._samples_since = time.perf_counter(), pl_module.samples_seen

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            seconds = time.perf_counter() - self._since
            self._rate = (pl_module.samples_seen - self._samples_since) / seconds if seconds > 0 else 0.0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        if trainer.is_global_zero:
            m = trainer.callback_metrics
            log.info(
                "epoch %d · step %d · val AUC %.4f · val log loss %.4f · %.0f samples/s",
                trainer.current_epoch,
                trainer.global_step,
                m["val/auc"],
                m["val/logloss"],
                self._rate,
            )
        self._since, self._samples_since = time.perf_counter(), pl_module.samples_seen
