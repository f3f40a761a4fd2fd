"""Inference throughput as AIM reports it (200,000 samples in batches of 2,000), and the cost of ctrlab's evaluation.

Timed by default on one torch thread by that thread's CPU time (``time.thread_time``), so that other processes on
a shared machine do not enter the figures; ``--wall``: wall time on torch's default threads. A smaller
``--samples`` estimates the same rate in less time.

Part 1: every model config (configs/model/<name>.yaml as shipped) on a Criteo-shaped input (39 fields), the model
in eval mode under ``torch.inference_mode``, batches already in memory: samples/s, best of ``--repeats``
(``ctrlab.lit.timing.forward_seconds``, which also times AIM Tables 7-8's inference column in a run). Configs
that need other data (behaviour sequences, cross-product features, a searched architecture) are listed as such.

Part 2: the evaluation path for DeepFM over the same rows: ``Trainer.validate`` with ``CTRModule`` (inference
mode, AUC and log loss updated every batch) against the bare forward loop of part 1, alternating in the same run.

    PYTHONPATH=src .venv/bin/python benchmarks/inference.py [--samples 200000] [--batch 2000] [--models deepfm ...]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from measure import machine_line, setup_clock
from omegaconf import DictConfig

from ctrlab.data.cache import SplitArrays
from ctrlab.data.datamodule import BatchLoader
from ctrlab.data.schema import FeatureMap, Field
from ctrlab.lit.module import CTRModule, build_model
from ctrlab.lit.timing import forward_seconds

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "model"
ADAM = {"families": {"default": {"_target_": "torch.optim.Adam", "_partial_": True}}}


CLOCK = time.thread_time  # main() switches to wall time with --wall


def model_config(name: str) -> DictConfig:
    """``model=<name>`` as a run composes it (its defaults list applied)."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"model={name}"]).model


def bare_samples_per_s(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], repeats: int) -> float:
    return sum(len(b["label"]) for b in batches) / forward_seconds(model, batches, repeats, CLOCK)


def validate_samples_per_s(module: CTRModule, loader: BatchLoader) -> float:
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    start = CLOCK()
    trainer.validate(module, dataloaders=loader, verbose=False)
    return len(loader.arrays) / (CLOCK() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--fields", type=int, default=39)
    parser.add_argument("--vocab", type=int, default=1000, help="values per field")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=sorted(p.stem for p in CONFIGS.glob("*.yaml")))
    parser.add_argument("--wall", action="store_true", help="wall time, torch's default threads")
    args = parser.parse_args()
    global CLOCK
    CLOCK = setup_clock(args.wall)
    print(machine_line(args.wall))
    warnings.filterwarnings("ignore")  # Lightning's advice on workers and sync_dist, not about speed

    fm = FeatureMap("criteo_shape", [Field(f"f{i}", args.vocab) for i in range(args.fields)], {"valid": args.samples})
    rng = np.random.default_rng(0)
    arrays = SplitArrays(ids=rng.integers(0, args.vocab, (args.samples, args.fields), dtype=np.int32),
                         labels=(rng.random(args.samples) < 0.25).astype(np.float32))  # fmt: skip
    loader = BatchLoader(arrays, args.batch, shuffle=False)
    batches = list(loader)

    print(f"\n| model ({args.samples:,} samples, batch {args.batch:,}, F = {args.fields}) | params | samples/s |")
    print("|---|---:|---:|")
    for name in args.models:
        torch.manual_seed(0)
        try:
            model = build_model(model_config(name), fm)
            rate = bare_samples_per_s(model, batches, args.repeats)
        except Exception as err:  # noqa: BLE001 — a model that needs other inputs is reported, not timed
            cause = err.__cause__ or err  # Hydra wraps the constructor's error
            print(f"| {name} | — | needs other data ({type(cause).__name__}: {str(cause).splitlines()[0][:90]}) |")
            continue
        print(f"| {name} | {model.num_parameters():,} | {rate:,.0f} |", flush=True)

    torch.manual_seed(0)
    model = build_model(model_config("deepfm"), fm)
    rates: dict[str, list[float]] = {"bare forward loop": [], "CTRModule validate": []}
    for _ in range(args.repeats):
        rates["bare forward loop"].append(bare_samples_per_s(model, batches, 1))
        rates["CTRModule validate"].append(validate_samples_per_s(CTRModule(model, ADAM), loader))
    bare = max(rates["bare forward loop"])
    print(f"\n| DeepFM evaluation, {args.samples:,} rows | samples/s (best of {args.repeats}) | / bare loop |")
    print("|---|---:|---:|")
    for path, runs in rates.items():
        print(f"| {path} | {max(runs):,.0f} | {max(runs) / bare:.2f} |")


if __name__ == "__main__":
    main()
