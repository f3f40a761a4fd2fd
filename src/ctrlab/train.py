"""Hydra entry point for one training run: ``python -m ctrlab.train model=deepfm data=synthetic_criteo``.

Writes into the run directory: ``config_resolved.yaml``, ``config_tree.txt``, ``environment.json``, Lightning's
CSV log, ``checkpoints/{best,last}.ckpt`` and ``metrics.json`` (also on failure, with ``status: failed`` and the
error). A failed run prints its error as one line, keeps the traceback in its log file and exits with status 1;
in a multirun the sweep goes on and the multirun exits with status 1 at its end (``ctrlab.console``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from ctrlab.console import quiet_third_party, save_config_tree
from ctrlab.data.crosses import CrossSpec
from ctrlab.data.datamodule import CTRDataModule, RareValueGroup
from ctrlab.launchers import share_cores_between_jobs
from ctrlab.lit.callbacks import TrainingThroughput
from ctrlab.lit.loggers import SafeWandbLogger, StagedCSVLogger
from ctrlab.lit.module import NonFiniteLossError, build_model
from ctrlab.lit.resume import carry_csv_log, check_run_folder
from ctrlab.lit.timing import inference_seconds
from ctrlab.run_config import ConfigError, validate_run_config
from ctrlab.utils import environment, write_json

log = logging.getLogger("ctrlab.train")


def check_config(cfg: DictConfig) -> None:
    """Resolve everything up front and check it against the schema (``ctrlab.run_config``), so a missing or
    wrong value fails at start, naming its key."""
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
    choices = _choices()
    model = choices.get("model") or cfg.model._target_
    ablation = choices.get("ablation")
    # an ablation (configs/ablation/) that sets a key on a model without that part stops here, naming both
    context = f"model={model}" + (f" with ablation={ablation}" if ablation not in (None, "none") else "")
    validate_run_config(cfg, model_context=context)


class NoTrainingError(RuntimeError):
    """A run finished without a single training step."""


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


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _loggers(cfg: DictConfig, output_dir: Path) -> list[Any]:
    loggers = []
    for name, lcfg in (cfg.get("logger") or {}).items():
        if lcfg.get("_target_", "").endswith("SafeWandbLogger") and lcfg.get("group") is None:
            # one W&B group per multirun: the sweep folder's name (the run folder's for a single run)
            lcfg = OmegaConf.merge(lcfg, {"group": (output_dir.parent if _multirun() else output_dir).name})
        try:
            logger = instantiate(lcfg)
        except Exception as err:  # noqa: BLE001 — an optional logger must not stop the run
            if name == "csv":
                raise
            log.warning("logger %s could not be created (%s); continuing without it", name, err)
            continue
        if isinstance(logger, SafeWandbLogger):  # the job's W&B run carries its whole resolved config
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        loggers.append(logger)
    return loggers


def _selection(cfg: DictConfig, trainer: pl.Trainer) -> dict[str, Any]:
    """What chose the scored checkpoint, for the report's plateau check: the monitored metric, the epoch of the
    best checkpoint, the epoch budget, and whether early stopping ended the run before that budget."""
    ckpt = trainer.checkpoint_callback
    stopper = trainer.early_stopping_callback
    return {
        "monitor": f"val/{cfg.monitor}",
        "best_epoch": getattr(ckpt, "best_epoch", None),
        "max_epochs": cfg.trainer.get("max_epochs"),
        "stopped_early": bool(stopper is not None and stopper.stopped_epoch > 0),
    }


def _cross_spec(cfg: DictConfig) -> CrossSpec | None:
    """``data.crosses`` when a run asks for cross-product features (e.g. model=poly2), else None."""
    crosses = cfg.data.get("crosses")
    if crosses is None or not crosses.enabled:
        return None
    pairs = crosses.pairs if isinstance(crosses.pairs, str) else OmegaConf.to_container(crosses.pairs)
    return CrossSpec(pairs=pairs, min_count=crosses.min_count)


def build_datamodule(cfg: DictConfig) -> CTRDataModule:
    """The run's data, prepared (cache built or checked) and set up: its feature map is ready."""
    group = cfg.data.get("test_group")
    if group is not None:
        # values below the data's own count threshold share the OOV id: in the group only if that threshold is lower
        threshold = cfg.data.source.get("min_count")
        if isinstance(threshold, int) and threshold > group.fewer_than:
            raise ConfigError(
                f"data.test_group.fewer_than={group.fewer_than} is below data.source.min_count={threshold}: the "
                f"OOV id would merge values seen {group.fewer_than}-{threshold - 1} times with rarer ones"
            )
    datamodule = CTRDataModule(
        source=instantiate(cfg.data.source),
        cache_dir=cfg.paths.cache_dir,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        seed=cfg.seed,
        crosses=_cross_spec(cfg),
        verify=cfg.paths.cache_verify,
        test_group=None if group is None else RareValueGroup(group.field, group.fewer_than),
        resident=cfg.data.get("resident", "auto"),  # where a split lives while served (ctrlab.data.datamodule)
    )
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, validate and test one model; returns the metrics written to ``metrics.json``.

    However the run ends, ``metrics.json`` is written (``status: failed`` and the error if it raised) and
    its W&B run, if any, finished with it as summary; an error is then raised again.
    """
    output_dir = Path(cfg.paths.output_dir)
    check_run_folder(output_dir, cfg.get("ckpt_path"))
    output_dir.mkdir(parents=True, exist_ok=True)
    choices = _choices()
    metrics: dict[str, Any] = {
        "model": choices.get("model"),
        "data": choices.get("data"),
        "optimizer": choices.get("optimizer"),
        "ablation": choices.get("ablation"),  # an override bundle of configs/ablation/ ("none": the model as is)
        "seed": cfg.get("seed"),
        "status": "running",
    }
    loggers: list[Any] = []
    try:
        return _train(cfg, output_dir, metrics, loggers)
    except BaseException as err:
        metrics.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        if rank_zero_only.rank == 0:
            write_json(output_dir / "metrics.json", metrics)
        for logger in loggers:
            if isinstance(logger, SafeWandbLogger):
                logger.finish(metrics)


def _train(cfg: DictConfig, output_dir: Path, metrics: dict[str, Any], loggers: list[Any]) -> dict[str, Any]:
    """The run itself. It fills ``metrics`` and ``loggers`` as it goes, so that ``train`` can record and
    finish them however it ends."""
    check_config(cfg)
    share_cores_between_jobs()  # before environment.json, which records the threads
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    choices = _choices()
    if rank_zero_only.rank == 0:
        save_config_tree(cfg, choices, output_dir / "config_tree.txt", echo=not _multirun())
    write_json(output_dir / "environment.json", environment())
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in config_resolved.yaml

    datamodule = build_datamodule(cfg)
    fm = datamodule.feature_map
    model = build_model(cfg.model, fm)  # model.architecture=<architecture.json>: the artifact's decisions
    if cfg.get("compile"):  # torch.compile of the model's forward, in place: the state dict keeps its keys
        model.compile()
    # the LightningModule is a config choice (configs/module/); config + feature map make its checkpoints rebuildable
    module = instantiate(cfg.module, _partial_=True)(model=model, optimizer=cfg.optimizer, config=cfg, feature_map=fm)

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]  # null: switched off
    throughput = next((c for c in callbacks if isinstance(c, TrainingThroughput)), None)
    loggers.extend(_loggers(cfg, output_dir))
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)

    metrics.update(
        {
            "paper_row": _paper_row(cfg, choices.get("model")),
            "paper_dataset": cfg.data.paper_dataset,
            # a hyper-parameter grid's point (configs/grid/): the report keeps, per model and data, the best on val/auc
            "grid_point": _grid_point(cfg),
            "data_description": fm.description,
            "split_sizes": fm.split_sizes,
            "params": model.num_parameters(),
            "dense_params": sum(p.numel() for p in model.parameter_groups().get("dense", [])),  # the papers' counts
            # a synthetic stand-in's truth: AUC / log loss of the true click probability, and its mechanism
            "oracle": (fm.extra.get("oracle") or {}).get("test"),
            "oracle_valid": (fm.extra.get("oracle") or {}).get("valid"),
            "planted_mechanism": (fm.extra.get("planted") or {}).get("mechanism"),
        }
    )
    if cfg.get("ckpt_path"):
        carry_csv_log(cfg.ckpt_path, trainer.loggers)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except NonFiniteLossError:
        last = output_dir / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(last)  # the weights are still finite: the step was not taken
        metrics["last_checkpoint"] = str(last)
        log.info("logs and the weights before the bad step (%s) are kept", last)
        raise
    metrics["fit_time_s"] = time.perf_counter() - start
    metrics["epochs"] = trainer.current_epoch
    metrics["global_step"] = trainer.global_step
    if trainer.global_step == 0:
        raise NoTrainingError(
            f"the run trained zero steps (train split: {fm.split_sizes.get('train')} rows, batch size "
            f"{cfg.data.batch_size}, trainer.limit_train_batches={cfg.trainer.get('limit_train_batches')}, "
            f"trainer.max_epochs={cfg.trainer.get('max_epochs')}): an untrained model is not a result"
        )
    if throughput is not None:
        metrics.update(train_time_s=throughput.train_time_s, samples_per_s=throughput.samples_per_s)

    metrics.update(_selection(cfg, trainer))
    ckpt = "best" if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path else None
    for logger in loggers:  # the scores below are the best checkpoint's, not one more epoch's
        if isinstance(logger, StagedCSVLogger):
            logger.stage = "best_checkpoint"
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
    if cfg.inference_timing:  # AIM Tables 7-8: seconds to score N test rows at a fixed batch size
        timing = cfg.inference_timing
        metrics["inference_s"] = inference_seconds(
            model, datamodule.splits["test"], timing.samples, timing.batch_size, trainer.strategy.root_device
        )
    # a search stage adds its artifact and "without re-train" scores, a re-train stage what its architecture kept
    metrics.update(module.stage_metrics(trainer, datamodule, test=bool(cfg.get("test"))))
    metrics["status"] = "completed"
    log.info("metrics: %s", {k: metrics[k] for k in metrics if "/" in k})
    return metrics


@hydra.main(version_base="1.3", config_path="../../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_third_party()
    try:
        metrics = train(cfg)
    except Exception as err:
        # one line on the console (ctrlab.console.OneLineFormatter); the traceback goes to the run's log file
        log.error("%s: %s", type(err).__name__, err, exc_info=err)
        if _multirun():
            return None  # one failed job must not end a whole table; the multirun exits with 1 at its end
        raise SystemExit(1) from None
    return metrics.get(cfg.get("optimized_metric") or "val/auc")  # for hyper-parameter sweepers


if __name__ == "__main__":
    main()
