"""Loggers: the CSV log with a ``stage`` column, and W&B, one run per job, which never fails training."""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.logger import DummyExperiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)

# Why W&B could not log online earlier in this process (None: it could). Hydra's basic launcher runs every
# job of a multirun in one process, so a sweep waits for an unreachable W&B server once, not once per job.
_online_failure: str | None = None


class StagedCSVLogger(CSVLogger):
    """Lightning's CSV log (``csv/metrics.csv``) with a ``stage`` column: ``fit`` for the rows logged while
    training, ``best_checkpoint`` for the validation and test scores of the best checkpoint after ``fit``,
    which Lightning logs at the last step and epoch: without the label that row reads as one more epoch.
    ``ctrlab.train`` sets ``stage`` before scoring the best checkpoint."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = "fit"

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics({**metrics, "stage": self.stage}, step)


class SafeWandbLogger(WandbLogger):
    """Lightning's WandbLogger (offline unless told otherwise) that disables itself on the first error.

    Online, ``wandb.init`` gives up after ``init_timeout`` seconds (W&B's default, 90 s, made a run without
    network stall); the run then logs offline instead, as does every later job of the same sweep, and a
    warning says so once. ``finish`` ends the job's W&B run, so the next job of a multirun starts its own.
    """

    def __init__(self, init_timeout: float = 90.0, **kwargs: Any) -> None:
        import wandb  # an optional dependency: ctrlab.train drops W&B with a warning when it is missing

        self._failed = False
        super().__init__(settings=wandb.Settings(init_timeout=init_timeout), **kwargs)
        # Lightning always passes `anonymous`, which W&B 0.31 deprecates with a warning on every run
        self._wandb_init.pop("anonymous", None)
        if _online_failure is not None:
            self._wandb_init["mode"] = "offline"

    def _disable(self, what: str, err: BaseException) -> None:
        if not self._failed:
            log.warning("W&B %s failed (%s: %s); continuing without W&B", what, type(err).__name__, err)
        self._failed = True

    @property
    def experiment(self) -> Any:
        global _online_failure
        if self._failed:
            return DummyExperiment()
        try:
            return super().experiment
        except Exception as err:  # noqa: BLE001 — any W&B failure must leave the run alive
            if self._offline or self._wandb_init.get("mode") == "offline":
                self._disable("init", err)
                return DummyExperiment()
            _online_failure = f"{type(err).__name__}: {str(err).splitlines()[0]}"
            log.warning(
                "W&B could not log online (%s); this run, and the rest of its sweep, log to W&B offline: "
                "upload later with `wandb sync %s/wandb/offline-run-*`",
                _online_failure,
                self.save_dir,
            )
        self._wandb_init["mode"] = "offline"
        try:
            return super().experiment
        except Exception as err:  # noqa: BLE001
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

    @rank_zero_only
    def finish(self, summary: dict[str, Any]) -> None:
        """End this job's W&B run (``wandb.finish``) with ``summary`` (metrics.json) as the run's summary;
        exit code 1 unless ``summary["status"]`` is ``completed``. Nothing to do if the run never started."""
        if self._failed or self._experiment is None:
            return
        run, self._experiment = self._experiment, None
        try:
            offline, where = run.offline, run.sync_dir
            run.summary.update(summary)
            run.finish(exit_code=0 if summary.get("status") == "completed" else 1)
        except Exception as err:  # noqa: BLE001
            self._disable("finish", err)
            return
        if offline:
            log.info("W&B run saved offline; upload it with `wandb sync %s`", where)
