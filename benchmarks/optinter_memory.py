"""Step time and peak memory of OptInter-M (every field pair memorized) on the Criteo stand-in with full crosses:
dense gradients + Adam for the cross tables (the default) against sparse gradients + SparseAdam.

    PYTHONPATH=src .venv/bin/python benchmarks/optinter_memory.py [--rows 50000] [--max-vocab 20] [--steps 30]
        [--batch 2000] [--hidden 700 700 700 700 700] [--device cpu|cuda]

The stand-in is ``synthetic_criteo`` (39 fields, 741 crossed pairs) with ``--max-vocab`` values per field (the
stand-in's 20 keeps the cross tables small; raise it to see tables closer to real data). Each mode runs in a fresh
subprocess: the mean time of ``--steps`` optimizer steps after 3 warm-up steps, and the peak memory of the whole
run (CPU: the process's peak RSS, ``ru_maxrss``; CUDA: ``max_memory_allocated``). The other families stay on
dense Adam in both modes. SparseAdam has no weight decay, so the sparse mode would need l2_c as a penalty on
the looked-up rows; it is measured without.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ctrlab.data import cache
from ctrlab.data.crosses import CrossSpec, attach_crosses, prepare_crosses
from ctrlab.data.datamodule import BatchLoader
from ctrlab.lit.module import training_loss
from ctrlab.models.optinter import OptInter
from ctrlab.utils import machine_summary

ROOT = Path(__file__).resolve().parents[1]


def standin(rows: int, max_vocab: int, folder: Path) -> tuple:
    """``data=synthetic_criteo standin=memorize`` as a run composes it, at ``rows`` rows and ``max_vocab``."""
    overrides = [
        "data=synthetic_criteo",
        "standin=memorize",
        f"data.num_rows={rows}",
        f"data.source.max_vocab={max_vocab}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        source = instantiate(compose("train", overrides=overrides).data.source)
    base = cache.prepare(source, folder)
    fm, splits = cache.load(base)
    attach_crosses(prepare_crosses(base, CrossSpec(pairs="all", min_count=20)), fm, splits)
    return fm, splits


def measure(args: argparse.Namespace, sparse: bool) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    fm, splits = standin(args.rows, args.max_vocab, Path(args.cache))
    model = OptInter(fm, embedding_dim=20, cross_dim=10, embedding_init_std=1e-4, cross_init_std=1e-4,
                     search_init_std=1.0, mlp_hidden=args.hidden, architecture="memorize",
                     sparse_cross=sparse).to(device)  # fmt: skip
    groups = model.parameter_groups()
    cross = groups.pop("cross")
    opts = [torch.optim.SparseAdam(cross, lr=1e-4) if sparse else torch.optim.Adam(cross, lr=1e-4, weight_decay=3e-8)]
    opts += [torch.optim.Adam(ps, lr=1e-4) for ps in groups.values()]
    loader = BatchLoader(splits["train"], args.batch, shuffle=True, seed=0)
    batches = [{k: v.to(device) for k, v in b.items()} for _, b in zip(range(args.steps + 3), loader, strict=False)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i, batch in enumerate(batches * ((args.steps + 3) // len(batches) + 1)):
        if i == args.steps + 3:
            break
        start = time.perf_counter()
        bce, _ = training_loss(model, batch)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        bce.backward()
        for opt in opts:
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {"mode": "sparse" if sparse else "dense", "params": model.num_parameters(),
            "cross_rows": model.memorized.table.num_embeddings, "step_ms": 1000 * sum(times) / len(times),
            "peak_mb": peak}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--max-vocab", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=2000)  # OptInter Table IV
    parser.add_argument("--hidden", type=int, nargs="+", default=[700] * 5)  # Criteo's net
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default="")
    parser.add_argument("--mode", choices=["dense", "sparse"], help=argparse.SUPPRESS)  # one subprocess's case
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args, args.mode == "sparse")))
        return
    print(machine_summary(), f"| device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        args.cache = args.cache or tmp
        standin(args.rows, args.max_vocab, Path(args.cache))  # built once, before the timed subprocesses
        print(f"{'mode':<7} {'params':>12} {'cross rows':>11} {'step ms':>9} {'peak MB':>9}")
        for mode in ("dense", "sparse"):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--cache", args.cache, "--mode", mode]
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            print(f"{r['mode']:<7} {r['params']:>12,} {r['cross_rows']:>11,} {r['step_ms']:>9.1f} {r['peak_mb']:>9.0f}")


if __name__ == "__main__":
    main()
