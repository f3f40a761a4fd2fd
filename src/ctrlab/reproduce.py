"""Reproduce one paper table or figure: run its experiment as one Hydra multirun, then write the report.

    python -m ctrlab.reproduce dynint/table1 --scale smoke [--data criteo,synthetic_avazu,...] [overrides]

(``make reproduce-table-1`` calls this.) Models are the table's rows that have a config in
``configs/model/``; rows without one are reported as "not yet implemented".
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from ctrlab.report import write_table
from ctrlab.report.paper import get_table

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"

# experiment config -> (paper, table key in paper_tables.yaml)
EXPERIMENTS = {"dynint/table1": ("dynint", "table1")}


def implemented_models(paper: str, table: str) -> list[str]:
    """The table's model keys, in the paper's order, that have a model config."""
    keys = dict.fromkeys(row["model"] for row in get_table(paper, table).rows)
    return [k for k in keys if (CONFIGS / "model" / f"{k}.yaml").exists()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--scale", choices=["smoke", "default", "paper"], default="smoke")
    parser.add_argument("--data", help="comma-separated data configs, one per paper column")
    parser.add_argument("--models", help="comma-separated model configs (default: every implemented row)")
    args, overrides = parser.parse_known_args(argv)  # the rest are Hydra overrides, e.g. trainer.max_epochs=2

    paper, table = EXPERIMENTS[args.experiment]
    models = args.models or ",".join(implemented_models(paper, table))
    sweep_dir = ROOT / "logs" / args.experiment.replace("/", "_") / "multiruns" / time.strftime("%Y-%m-%d_%H-%M-%S")
    cmd = [
        sys.executable, "-m", "ctrlab.train", "-m",
        f"experiment={args.experiment}", f"scale={args.scale}", f"model={models}",
        f"hydra.sweep.dir={sweep_dir}",
        *([f"data={args.data}"] if args.data else []),
        *overrides,
    ]
    print("running:", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=ROOT)
    if code != 0:
        print(f"the multirun exited with {code}; writing the report from the runs that finished", flush=True)
    md = write_table(paper, table, [sweep_dir], ROOT / "results" / paper, CONFIGS, args.scale)
    print(md.read_text())
    print(f"written: {md} and {md.with_suffix('.csv')}")
    return code


if __name__ == "__main__":
    sys.exit(main())
