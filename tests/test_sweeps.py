"""Optuna searches (configs/hparams_search/), parallel jobs on one machine (joblib) and the Slurm launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import open_dict
from optuna.distributions import CategoricalDistribution

import ctrlab.launchers
from ctrlab.launchers import available_cores, parallel_jobs
from ctrlab.train import train
from tests.helpers import ROOT, run_module

FAST = ["debug=smoke", "data.num_rows=3000", "logger=csv", "test=false"]

# (search, model, grid file): each search with the models it is documented for, each with its grid file
SEARCH_CASES = [
    ("dynint_neural", "deepfm", None),
    ("dynint_neural", "dnn", None),
    ("dynint_neural", "xdeepfm", "dynint/cin"),
    ("dynint_neural", "dcn_v2", "dynint/cross"),
    ("dynint_pin", "xdeepint", None),
    ("dynint_pin", "dynint_dwp", "dynint/dynint_dwp"),
]


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def _corners(params: dict) -> tuple[list[str], list[str]]:
    """Overrides for the smallest and the largest value of every searched parameter."""
    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in params.items()])
    assert not fixed, f"a searched key with one value: {fixed}"
    low, high = [], []
    for key, dist in space.items():
        lo, hi = (
            (dist.choices[0], dist.choices[-1]) if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        )
        low.append(f"{key}={lo}")
        high.append(f"{key}={hi}")
    return low, high


def test_every_search_config_is_covered():
    assert {s for s, _, _ in SEARCH_CASES} == {p.stem for p in (ROOT / "configs" / "hparams_search").glob("*.yaml")}


@pytest.mark.parametrize("search,model,grid", SEARCH_CASES)
def test_search_maximises_val_auc_over_keys_that_exist_and_builds_at_its_corners(search, model, grid, tiny_feature_map):
    base = [f"hparams_search={search}", f"model={model}", *([f"grid={grid}"] if grid else [])]
    cfg = _compose(base)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/auc" and sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.n_jobs == 1  # the basic launcher runs one trial at a time
    params = dict(sweeper.params)
    assert {"grid.lr", "grid.l2", "grid.depth", "grid.embedding_dim"} <= set(params)
    assert all(k.startswith("grid.") and k.split(".", 1)[1] in cfg.grid for k in params), params
    assert set(params) == {f"grid.{k}" for k in cfg.grid}, "every grid value the model reads is searched"
    for corner in _corners(params):
        point = _compose([*base, *corner])
        net = instantiate(point.model, _partial_=True)(feature_map=tiny_feature_map)
        assert net.num_parameters() > 0
        chosen = dict(o.split("=", 1) for o in corner)
        assert point.model.embedding_dim == point.grid.embedding_dim == int(chosen["grid.embedding_dim"])


@pytest.mark.parametrize(
    "n_jobs,cores,expected", [(None, 8, 1), (1, 8, 1), (3, 8, 3), (-1, 8, 8), (-2, 8, 7), (-20, 8, 1)]
)
def test_parallel_jobs_reads_joblibs_n_jobs(n_jobs, cores, expected):
    assert parallel_jobs(n_jobs, cores) == expected


def test_sweeper_asks_as_many_trials_as_the_launcher_runs_at_once():
    assert _compose(["hparams_search=dynint_pin", "hydra/launcher=joblib"]).hydra.sweeper.n_jobs == available_cores()
    two = _compose(["hparams_search=dynint_pin", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert two.hydra.sweeper.n_jobs == 2


def test_a_parallel_job_takes_its_share_of_the_cores(tmp_path, monkeypatch):
    """In-process, with the config a joblib job sees: 6 cores and n_jobs=2 give 3 torch threads, recorded."""
    cfg = _compose([*FAST, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.mode=MULTIRUN"])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.cache_dir = str(tmp_path / "cache")
        del cfg["hydra"]
    monkeypatch.setattr(ctrlab.launchers, "available_cores", lambda: 6)
    before = torch.get_num_threads()
    try:
        train(cfg)
    finally:
        torch.set_num_threads(before)
        HydraConfig.instance().cfg = None  # later tests must not run "inside" this multirun
    assert json.loads((tmp_path / "run" / "environment.json").read_text())["torch_threads"] == 3


def test_slurm_launcher_composes_with_its_documented_keys():
    launcher = _compose(["hydra/launcher=slurm"]).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    for key in ("partition", "timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb"):
        assert key in launcher, key
    assert launcher.timeout_min == 1440 and launcher.gpus_per_node == 1


def _multirun(tmp_path: Path, *overrides: str) -> Path:
    """``python -m ctrlab.train -m`` as a user runs it; returns the sweep folder."""
    sweep = tmp_path / "sweep"
    # the threads per job are ctrlab's to set here
    env = {"CTRLAB_ROOT": str(tmp_path), "WANDB_MODE": "offline", "OMP_NUM_THREADS": None}
    done = run_module("ctrlab.train", "-m", *FAST, *overrides, f"hydra.sweep.dir={sweep}", env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep


def _jobs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())


@pytest.mark.slow
def test_optuna_search_runs_its_trials_and_reports_the_best_val_auc(tmp_path):
    sweep = _multirun(tmp_path, "hparams_search=dynint_neural", "hydra.sweeper.n_trials=3")
    jobs = [json.loads((job / "metrics.json").read_text()) for job in _jobs(sweep)]
    assert len(jobs) == 3 and all(m["status"] == "completed" for m in jobs)
    assert len({m["grid_point"] for m in jobs}) == 3, "each trial its own parameters"
    best = max(jobs, key=lambda m: m["val/auc"])
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(best["val/auc"])
    point = " ".join(f"{k.split('.', 1)[1]}={v}" for k, v in sorted(result["best_params"].items()))
    assert point == best["grid_point"]


@pytest.mark.slow
def test_joblib_jobs_run_in_parallel_with_their_share_of_the_cores(tmp_path):
    sweep = _multirun(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2")
    threads = [json.loads((job / "environment.json").read_text())["torch_threads"] for job in _jobs(sweep)]
    assert threads == [max(1, available_cores() // 2)] * 2
