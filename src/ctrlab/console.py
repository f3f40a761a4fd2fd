"""What a run prints: third-party noise silenced, the config tree, one-line errors, one line per finished job.

- ``quiet_third_party()``: the one place where known-harmless warnings and log lines of other libraries
  are silenced, each with the reason it is harmless. ``ctrlab.train.main`` calls it first.
- ``OneLineFormatter``: the console's log format (``configs/hydra/default.yaml``); it leaves tracebacks to
  the run's log file, so a failed run prints one line.
- ``save_config_tree()``: the composed config as a rich tree, saved as ``config_tree.txt``.
- ``SweepProgress``: a Hydra callback that prints one line per finished job of a multirun (and a progress
  bar when stdout is a terminal) and makes a multirun with failed jobs exit non-zero.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.syntax import Syntax
from rich.tree import Tree

# Lightning's info lines (rank_zero_info) all go through this one logger.
LIGHTNING_INFO_LOGGER = "pytorch_lightning.utilities.rank_zero"

# Lightning info lines that say nothing a ctrlab run does not already record, by their start.
HARMLESS_LIGHTNING_INFO = (
    "GPU available:",  # the accelerator asked for is in config_resolved.yaml, the hardware in environment.json
    "TPU available:",
    "💡 Tip:",  # an advertisement for Lightning's hosted logger (litlogger)
    "`Trainer(val_check_interval=1.0)` was configured",  # validation once per epoch: the configured protocol
    "`Trainer.fit` stopped:",  # the epochs and steps run are in metrics.json
    "Restoring states from the checkpoint path",  # the best checkpoint's validate/test after fit; and resume
    "Loaded model weights from the checkpoint",
    "Restored all states from the checkpoint",
)

# (message start, category) of warnings that are harmless here.
HARMLESS_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # Lightning 2.6's copy of torch's pytree flattening still builds a LeafSpec; torch 2.13 deprecates the
    # class, not the behaviour (the batches are flattened the same way)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # fewer batches per epoch than log_every_n_steps only thins the per-step train/loss curve of small runs;
    # validation, checkpoints and metrics.json do not depend on it
    (r"The number of training batches \(\d+\) is smaller than the logging interval", Warning),
)


class _DropLines(logging.Filter):
    """Drops log records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def quiet_third_party() -> None:
    """Silence the known-harmless warnings and log lines of Lightning, torch and W&B (listed above).

    Idempotent. Anything not listed still prints: a new warning is worth reading once.
    """
    for message, category in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    lightning = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _DropLines) for f in lightning.filters):
        lightning.addFilter(_DropLines(HARMLESS_LIGHTNING_INFO))
    # W&B's banner (version, "syncing is set to offline", where the run is saved, how to sync it) is printed
    # per run; ctrlab logs where an offline run went instead (ctrlab.lit.loggers). WANDB_SILENT=false keeps it.
    os.environ.setdefault("WANDB_SILENT", "true")


class OneLineFormatter(logging.Formatter):
    """The console's format: the message only, never the traceback (the run's log file keeps that)."""

    def format(self, record: logging.LogRecord) -> str:
        # the record is shared with the file handler: hide its traceback for this format only
        exc = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = exc


# the config groups first, in the order a reader looks for them; then any other section
TREE_ORDER = ("data", "model", "optimizer", "trainer", "callbacks", "logger", "paths")


def config_tree(cfg: DictConfig, choices: dict[str, Any]) -> Tree:
    """The resolved config as a tree: the run's scalar keys, then one branch per section, labelled with the
    config file chosen for it (``model: deepfm``)."""
    tree = Tree("config", guide_style="dim")
    scalars = [k for k, v in cfg.items() if not (isinstance(v, DictConfig) and v)]  # an empty section too
    sections = [k for k in TREE_ORDER if k in cfg] + sorted(k for k in cfg if k not in scalars and k not in TREE_ORDER)
    if scalars:
        run = OmegaConf.to_yaml(OmegaConf.create({k: cfg[k] for k in scalars}), resolve=True)
        tree.add("run").add(Syntax(run.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    for key in sections:
        label = f"{key}: {choices[key]}" if choices.get(key) else str(key)
        text = OmegaConf.to_yaml(cfg[key], resolve=True).rstrip() or "{}"
        tree.add(label).add(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    return tree


def save_config_tree(cfg: DictConfig, choices: dict[str, Any], path: Path, echo: bool) -> None:
    """Write the config tree to ``path`` as plain text; with ``echo``, print it on stdout too."""
    tree = config_tree(cfg, choices)
    with path.open("w") as f:
        Console(file=f, width=120, color_system=None).print(tree)
    if echo:
        Console().print(tree)


def sweep_values(config: DictConfig) -> dict[str, int | None]:
    """Each key of a Hydra basic-sweeper multirun -> its number of values (1: not swept; None: a sweep that is
    no list of values, e.g. an interval), over ``hydra.sweeper.params`` then the command line, which wins key
    by key, as in Hydra's BasicSweeper."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    counts: dict[str, int | None] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        if not override.is_sweep_override():
            counts[override.get_key_element()] = 1
        elif override.is_discrete_sweep():
            counts[override.get_key_element()] = len(list(override.sweep_string_iterator()))
        else:
            counts[override.get_key_element()] = None
    return counts


def duration(seconds: float) -> str:
    """``0.4 s``, ``14 s``, ``3 min``, ``2.5 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class SweepProgress(Callback):
    """One line per finished job of a multirun, read from the job's ``metrics.json``::

        [12/48] deepfm · synthetic_avazu · seed 2 -> val AUC 0.7012, test AUC 0.6990 · 14 s · ETA 2 min

    with any other swept key as ``key=value``; a failed job prints ``FAILED: <error>``. On a terminal a rich
    progress bar over the jobs stays at the bottom. At the end of a multirun in which a job failed it exits
    with status 1, after every job ran (Hydra's sweep itself goes on past a failed job, see ctrlab.train).
    Registered in ``configs/hydra/default.yaml``; runs in the launching process (Hydra's basic launcher).
    """

    def __init__(self) -> None:
        self.total: int | None = None
        self.swept: list[str] = []
        self.done = 0
        self.failed: list[str] = []
        self.start = self.job_start = 0.0
        self.progress: Progress | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start = time.perf_counter()
        counts = sweep_values(config)
        self.total = None if None in counts.values() else math.prod(counts.values())
        self.swept = [key for key, n in counts.items() if n != 1]
        if sys.stdout.isatty():
            self.progress = Progress(
                TextColumn("jobs"), BarColumn(), MofNCompleteColumn(), TextColumn("· ETA"), TimeRemainingColumn()
            )
            self.progress.add_task("jobs", total=self.total)
            self.progress.start()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.job_start = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        self.done += 1
        out = Path(OmegaConf.select(config, "paths.output_dir", default=config.hydra.runtime.output_dir))
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
        failed = metrics.get("status") != "completed" or job_return.status != JobStatus.COMPLETED
        if failed:
            self.failed.append(str(out))
        line = f"{self._counter()} {self._label(config, metrics)} -> {self._outcome(metrics, failed)}"
        line += f" · {duration(time.perf_counter() - self.job_start)}"
        if self.total is not None and self.done < self.total:
            rate = (time.perf_counter() - self.start) / self.done
            line += f" · ETA {duration(rate * (self.total - self.done))}"
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
            self.progress.advance(self.progress.task_ids[0])
        else:
            print(line, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
        elapsed = duration(time.perf_counter() - self.start)
        print(f"{self.done} jobs in {elapsed}, {len(self.failed)} failed · {config.hydra.sweep.dir}", flush=True)
        if self.failed:
            print(
                "failed (metrics.json has the error, the job's .log its traceback): " + ", ".join(self.failed),
                flush=True,
            )
            # a callback's exception is only a warning to Hydra; SystemExit ends the process with status 1
            raise SystemExit(1)

    def _counter(self) -> str:
        return f"[{self.done}/{self.total}]" if self.total else f"[{self.done}]"

    def _label(self, config: DictConfig, metrics: dict[str, Any]) -> str:
        choices = config.hydra.runtime.choices
        parts = [
            str(metrics.get("model") or choices.get("model")),
            str(metrics.get("data") or choices.get("data")),
            f"seed {metrics.get('seed', OmegaConf.select(config, 'seed'))}",
        ]
        job = dict(o.split("=", 1) for o in config.hydra.overrides.task if "=" in o)
        parts += [f"{k}={job[k]}" for k in self.swept if k in job and k not in ("model", "data", "seed")]
        return " · ".join(parts)

    @staticmethod
    def _outcome(metrics: dict[str, Any], failed: bool) -> str:
        if failed:
            error = str(metrics.get("error") or "no metrics.json").splitlines()[0]
            return f"FAILED: {error[:160]}"
        scores = [
            f"{name} AUC {metrics[key]:.4f}"
            for name, key in (("val", "val/auc"), ("test", "test/auc"))
            if key in metrics
        ]
        return ", ".join(scores) or "completed"
