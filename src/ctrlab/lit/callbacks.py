"""Callbacks that ctrlab adds to Lightning's own."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class ThroughputMonitor(pl.Callback):
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
