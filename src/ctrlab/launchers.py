"""Jobs that share one machine: how many a launcher runs at once, and the torch threads each then gets.

``hydra/launcher=joblib`` runs ``n_jobs`` jobs of a multirun at once on this machine (configs/hydra/launcher/);
each job takes floor(cores / n_jobs) torch threads, so that they do not fight over the cores. The
``${parallel_jobs:...}`` resolver lets a sweeper (configs/hparams_search/) ask for as many trials at a time.
"""

from __future__ import annotations

import logging
import os

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


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


def share_cores_between_jobs() -> None:
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
