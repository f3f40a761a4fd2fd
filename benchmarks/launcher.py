"""Parallel sweeps on one machine: the same 4-job multirun with Hydra's basic launcher (one job after another,
all cores each) and with ``hydra/launcher=joblib`` (``--n-jobs`` jobs at once, floor(cores / n_jobs) torch
threads each, set by ctrlab.train). Wall time of the whole command, process start-up included.

Each job is DeepFM (embedding 16, MLP 400-400-400, Adam) for ``--steps`` steps of batch ``--batch-size`` on the
synthetic Criteo stand-in, then validation on 20 batches; jobs differ only by seed. The dataset is built once
beforehand, so neither launcher pays for it. With ``--repeats`` > 1 the launchers alternate and each keeps its
best wall time (other load on the machine only ever slows a run down).

    .venv/bin/python benchmarks/launcher.py [--jobs 4] [--n-jobs 2] [--steps 300] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ctrlab.launchers import available_cores
from ctrlab.utils import machine_summary

ROOT = Path(__file__).resolve().parents[1]


def sweep(root: Path, name: str, overrides: list[str], threads: int | None = None) -> tuple[float, list[float]]:
    """Run one multirun, with ``threads`` torch threads per job if given; returns its wall time and each job's
    fit time (s)."""
    out = root / name
    env = {**os.environ, "CTRLAB_ROOT": str(root), "WANDB_MODE": "offline"}
    env.pop("OMP_NUM_THREADS", None)  # threads are what is measured: torch's default, or ctrlab's share
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ctrlab.train", "-m", *overrides, f"hydra.sweep.dir={out}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{name} sweep failed:\n{done.stderr[-3000:]}")
    fits = [json.loads((job / "metrics.json").read_text())["fit_time_s"] for job in sorted(out.glob("[0-9]*"))]
    return wall, fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4, help="jobs in the sweep (seeds 1..jobs)")
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib's jobs at once")
    parser.add_argument("--steps", type=int, default=300, help="training steps per job")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    rows = int(args.steps * args.batch_size / 0.7) + 1  # the stand-in's train split is 70%
    job = [
        "model=deepfm",
        "data=synthetic_criteo",
        f"data.num_rows={rows}",
        f"data.batch_size={args.batch_size}",
        "trainer.max_epochs=1",
        "+trainer.limit_val_batches=20",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "test=false",
    ]
    seeds = "seed=" + ",".join(str(s) for s in range(1, args.jobs + 1))
    # name -> (overrides, torch threads per job); "basic, 1 thread" separates the gain of running jobs side by
    # side from that of fewer threads per job (threads that fight for busy cores are slower than one)
    launchers = {
        "basic": ([], None),
        "basic, 1 thread": ([], 1),
        f"joblib n_jobs={args.n_jobs}": (["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"], None),
    }

    print(machine_summary())
    print(f"available cores: {available_cores()}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"sweep: {args.jobs} jobs x {args.steps} steps of batch {args.batch_size} (DeepFM, synthetic Criteo)")
    best: dict[str, tuple[float, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sweep(root, "warmup", [*job, "seed=0", "+trainer.limit_train_batches=1"])  # builds the dataset cache
        for r in range(args.repeats):
            for i, (name, (extra, threads)) in enumerate(launchers.items()):
                steps = f"+trainer.limit_train_batches={args.steps}"
                wall, fits = sweep(root, f"{i}_{r}", [*job, steps, seeds, *extra], threads)
                print(
                    f"  {name:>17}: {wall:7.1f} s wall; fit per job {', '.join(f'{f:.1f}' for f in fits)} s "
                    f"(load average {os.getloadavg()[0]:.2f})"
                )
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, fits)
    (basic, _), (basic_one, _), (parallel, _) = best.values()
    print(
        f"basic / joblib wall time: {basic / parallel:.2f}x; basic with 1 thread / joblib: "
        f"{basic_one / parallel:.2f}x (above 1: the parallel sweep is faster)"
    )


if __name__ == "__main__":
    main()
