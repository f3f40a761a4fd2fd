"""Loggers. W&B is optional: a missing package, no network or a broken run never fails training."""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import DummyExperiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)


class SafeWandbLogger(WandbLogger):
    """Lightning's WandbLogger (offline unless told otherwise) that disables itself on the first error."""

    def __init__(self, **kwargs: Any) -> None:
        self._failed = False
        super().__init__(**kwargs)

    def _disable(self, what: str, err: BaseException) -> None:
        if not self._failed:
            log.warning("W&B %s failed (%s: %s); continuing without W&B", what, type(err).__name__, err)
        self._failed = True

    @property
    def experiment(self) -> Any:
        if self._failed:
            return DummyExperiment()
        try:
            return super().experiment
        except Exception as err:  # noqa: BLE001 — any W&B failure must leave the run alive
            self._disable("init", err)
            return DummyExperiment()

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._failed:
            return
        try:
            super().log_metrics(metrics, step)
        except Exception as err:  # noqa: BLE001
            self._disable("log_metrics", err)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        if self._failed:
            return
        try:
            super().log_hyperparams(params)
        except Exception as err:  # noqa: BLE001
            self._disable("log_hyperparams", err)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._failed:
            return
        try:
            super().finalize(status)
        except Exception as err:  # noqa: BLE001
            self._disable("finalize", err)
