"""Hydra entry point for one training run: ``python -m ctrlab.train model=deepfm data=synthetic_criteo``.

Writes into the run directory: ``config_resolved.yaml``, ``environment.json``, Lightning's CSV log,
``checkpoints/{best,last}.ckpt`` and ``metrics.json`` (also on failure, with ``status: failed``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from ctrlab.data.crosses import CrossSpec
from ctrlab.data.datamodule import CTRDataModule
from ctrlab.lit.callbacks import ThroughputMonitor
from ctrlab.lit.module import CTRModule, NonFiniteLossError
from ctrlab.utils import environment, write_json

log = logging.getLogger("ctrlab.train")


class ConfigError(ValueError):
    """A configuration problem, reported with the key at fault."""


def check_config(cfg: DictConfig) -> None:
    """Resolve everything up front, so a missing path or value fails at start, naming its key."""
    try:
        # resolving first also catches `???` that arrives through an interpolation, e.g. ${oc.env:CRITEO,???}
        missing = sorted(OmegaConf.missing_keys(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))))
    except InterpolationResolutionError as err:
        raise ConfigError(f"config key `{err.full_key}` cannot be resolved: {err.msg}") from None
    if missing:
        keys = ", ".join(f"`{k}`" for k in missing)
        raise ConfigError(
            f"config key(s) {keys} required but not set; pass them on the command line, e.g. `{missing[0]}=...`"
        )


def parallel_jobs(n_jobs: int | None, cores: int) -> int:
    """How many jobs a launcher with joblib's ``n_jobs`` runs at once: None -> 1, n > 0 -> n, and a negative n
    counts back from the cores (-1 = one per core, -2 = all but one), never below 1."""
    if n_jobs is None:
        return 1
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a Slurm or taskset mask), else all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# the sweeper asks for as many trials at a time as the launcher runs (configs/hparams_search/)
OmegaConf.register_new_resolver("parallel_jobs", lambda n_jobs: parallel_jobs(n_jobs, available_cores()), replace=True)


def _share_cores_between_jobs() -> None:
    """Under a launcher that runs N jobs at once on this machine (``hydra/launcher=joblib``, ``n_jobs``), give
    each job floor(cores / N) torch threads, so that N jobs do not fight over the cores. Other launchers run one
    job at a time here, or on their own nodes, and keep torch's default."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    launcher = HydraConfig.get().launcher
    if "n_jobs" not in launcher:
        return
    cores = available_cores()
    jobs = parallel_jobs(launcher.n_jobs, cores)
    torch.set_num_threads(max(1, cores // jobs))
    log.info("%d cores shared by %d parallel jobs: %d torch threads each", cores, jobs, torch.get_num_threads())


def _choices() -> dict[str, Any]:
    if not HydraConfig.initialized():
        return {}
    return dict(HydraConfig.get().runtime.choices)


def _paper_row(cfg: DictConfig, model: str | None) -> str | None:
    """The paper-table row this run fills, when it is not the model's own name: a sweep's value
    (``paper_row: ${model.num_layers}``) or an experiment's row -> config mapping (``paper_row_configs``)."""
    if cfg.get("paper_row") is not None:
        return str(cfg.paper_row)
    return {c: r for r, c in (cfg.get("paper_row_configs") or {}).items()}.get(model)


def _grid_point(cfg: DictConfig) -> str | None:
    """The run's values of the swept ``grid.*`` keys, e.g. ``depth=2 lr=0.001``; None outside a grid."""
    grid = cfg.get("grid")
    if not grid:
        return None
    return " ".join(f"{k}={v}" for k, v in sorted(OmegaConf.to_container(grid, resolve=True).items()))


def _loggers(cfg: DictConfig, output_dir: Path) -> list[Any]:
    loggers = []
    for name, lcfg in (cfg.get("logger") or {}).items():
        if lcfg.get("_target_", "").endswith("SafeWandbLogger") and lcfg.get("group") is None:
            # one W&B group per multirun: the sweep folder's name (the run folder's for a single run)
            multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
            lcfg = OmegaConf.merge(lcfg, {"group": (output_dir.parent if multirun else output_dir).name})
        try:
            loggers.append(instantiate(lcfg))
        except Exception as err:  # noqa: BLE001 — an optional logger must not stop the run
            if name == "csv":
                raise
            log.warning("logger %s could not be created (%s); continuing without it", name, err)
    return loggers


def _cross_spec(cfg: DictConfig) -> CrossSpec | None:
    """``data.crosses`` when a run asks for cross-product features (e.g. model=poly2), else None."""
    crosses = cfg.data.get("crosses")
    if crosses is None or not crosses.enabled:
        return None
    pairs = crosses.pairs if isinstance(crosses.pairs, str) else OmegaConf.to_container(crosses.pairs)
    return CrossSpec(pairs=pairs, min_count=crosses.min_count)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, validate and test one model; returns the metrics written to ``metrics.json``."""
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _share_cores_between_jobs()  # before environment.json, which records the threads
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    write_json(output_dir / "environment.json", environment())
    choices = _choices()
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = CTRDataModule(
        source=instantiate(cfg.data.source),
        cache_dir=cfg.paths.cache_dir,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        seed=cfg.seed,
        crosses=_cross_spec(cfg),
    )
    datamodule.prepare_data()
    datamodule.setup()
    fm = datamodule.feature_map
    model = instantiate(cfg.model, _partial_=True)(feature_map=fm)  # a dataclass kwarg would become a DictConfig
    module = CTRModule(model, cfg.optimizer)

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]  # null: switched off
    throughput = next((c for c in callbacks if isinstance(c, ThroughputMonitor)), None)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=_loggers(cfg, output_dir) or False, callbacks=callbacks)

    metrics: dict[str, Any] = {
        "model": choices.get("model"),
        "data": choices.get("data"),
        "optimizer": choices.get("optimizer"),
        "paper_row": _paper_row(cfg, choices.get("model")),
        "paper_dataset": cfg.data.paper_dataset,
        # a hyper-parameter grid's point (configs/grid/): the report keeps, per model and data, the best on val/auc
        "grid_point": _grid_point(cfg),
        "data_description": fm.description,
        "split_sizes": fm.split_sizes,
        "seed": cfg.seed,
        "params": model.num_parameters(),
        "status": "running",
    }
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except NonFiniteLossError as err:
        last = output_dir / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(last)  # the weights are still finite: the step was not taken
        metrics.update(status="failed", error=str(err), last_checkpoint=str(last))
        write_json(output_dir / "metrics.json", metrics)
        log.error("%s — logs and %s are kept", err, last)
        raise
    metrics["fit_time_s"] = time.perf_counter() - start
    metrics["epochs"] = trainer.current_epoch
    metrics["global_step"] = trainer.global_step
    if throughput is not None:
        metrics.update(train_time_s=throughput.train_time_s, samples_per_s=throughput.samples_per_s)

    ckpt = "best" if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path else None
    metrics.update(
        {
            k: float(v)
            for k, v in trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0].items()
        }
    )
    if cfg.get("test"):
        metrics.update(
            {
                k: float(v)
                for k, v in trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0].items()
            }
        )
    metrics["best_checkpoint"] = trainer.checkpoint_callback.best_model_path if ckpt else None
    metrics["status"] = "completed"
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", metrics)
    log.info("metrics: %s", {k: metrics[k] for k in metrics if "/" in k})
    return metrics


@hydra.main(version_base="1.3", config_path="../../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except Exception as err:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        # one failed job must not end a whole table: record it, and let the report count it
        log.exception("job failed; the sweep goes on")
        failed = Path(cfg.paths.output_dir) / "metrics.json"
        if not failed.exists():
            choices = _choices()
            write_json(
                failed,
                {
                    "model": choices.get("model"),
                    "data": choices.get("data"),
                    "seed": cfg.get("seed"),
                    "status": "failed",
                    "error": f"{type(err).__name__}: {err}",
                },
            )
        return None
    return metrics.get(cfg.get("optimized_metric") or "val/auc")  # for hyper-parameter sweepers


if __name__ == "__main__":
    main()
