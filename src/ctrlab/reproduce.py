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

import yaml

from ctrlab.report import write_table
from ctrlab.report.figures import write_figure
from ctrlab.report.paper import get_table

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
EXPERIMENTS = sorted(str(p.relative_to(CONFIGS / "experiment").with_suffix(""))
                     for p in (CONFIGS / "experiment").rglob("*.yaml"))


def experiment_spec(experiment: str) -> dict:
    """The experiment file's ``report`` block (paper, key, kind, ...) plus its ``paper_row_configs``."""
    spec = yaml.safe_load((CONFIGS / "experiment" / f"{experiment}.yaml").read_text())
    if "report" not in spec:
        raise SystemExit(f"configs/experiment/{experiment}.yaml has no `report:` block (paper, key, kind)")
    return {"kind": "table", **spec["report"], "row_configs": spec.get("paper_row_configs") or {},
            "grids": spec.get("grids") or {}}


def implemented_models(paper: str, table: str, row_configs: dict[str, str]) -> list[str]:
    """The model configs of the table's rows, in the paper's order, for the rows that have one."""
    configs = dict.fromkeys(row_configs.get(row["model"], row["model"]) for row in get_table(paper, table).rows)
    return [c for c in configs if (CONFIGS / "model" / f"{c}.yaml").exists()]


def write_report(spec: dict, run_dirs: list[Path], scale: str) -> Path:
    """Write the experiment's report: a table with rows keyed by model (``kind: table``) or by a swept value
    (``sweep``), or a figure of a metric against a swept value (``figure``) or against steps (``curve``)."""
    out_dir = ROOT / "results" / spec["paper"]
    if spec["kind"] in ("figure", "curve"):
        return write_figure(spec, run_dirs, out_dir, scale)
    if spec["kind"] not in ("table", "sweep"):
        raise SystemExit(f"unknown report kind {spec['kind']!r}; allowed: table, sweep, figure, curve")
    return write_table(spec["paper"], spec["key"], run_dirs, out_dir, CONFIGS, scale, spec["row_configs"])


def _sweeps(spec: dict, models: str | None, scale: str) -> dict[str, list[str]]:
    """The multiruns to launch, by folder name -> their overrides: one for the whole experiment, except at
    ``scale=paper`` where each model with a grid (the experiment's ``grids``) runs its own
    grid (``grid=<name>``); the report then keeps each model's best point on val/auc."""
    model_list = models.split(",") if models else []
    grids = spec["grids"] if scale == "paper" else {}
    gridded = [m for m in model_list if m in grids]
    rest = [m for m in model_list if m not in grids]
    sweeps = {m.replace("/", "_"): [f"model={m}", f"grid={grids[m]}"] for m in gridded}
    if rest or not model_list:
        sweeps["all"] = [f"model={','.join(rest)}"] if rest else []
    return sweeps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--scale", choices=["smoke", "default", "paper"], default="smoke")
    parser.add_argument("--data", help="comma-separated data configs, one per paper column")
    parser.add_argument("--models", help="comma-separated model configs "
                                         "(default: a table's implemented rows; a sweep's own list)")
    args, overrides = parser.parse_known_args(argv)  # the rest are Hydra overrides, e.g. trainer.max_epochs=2

    spec = experiment_spec(args.experiment)
    models = args.models
    if models is None and spec["kind"] == "table":  # a sweep names its models in the experiment file
        models = ",".join(implemented_models(spec["paper"], spec["key"], spec["row_configs"]))
    root = ROOT / "logs" / args.experiment.replace("/", "_") / "multiruns" / time.strftime("%Y-%m-%d_%H-%M-%S")
    common = [f"experiment={args.experiment}", f"scale={args.scale}", *([f"data={args.data}"] if args.data else [])]
    sweeps = _sweeps(spec, models, args.scale)
    codes = []
    for name, sweep in sweeps.items():
        cmd = [sys.executable, "-m", "ctrlab.train", "-m", *common, f"hydra.sweep.dir={root / name}", *sweep,
               *overrides]
        print("running:", " ".join(cmd), flush=True)
        codes.append(subprocess.call(cmd, cwd=ROOT))
        if codes[-1] != 0:
            print(f"the multirun exited with {codes[-1]}; the report uses the runs that finished", flush=True)
    code = max(codes)
    run_dirs = [root / name for name in sweeps if (root / name).is_dir()]
    if not run_dirs:  # no multirun got as far as its first job (a config error, printed above)
        print("no runs to report; the report was not written", flush=True)
        return code or 1
    md = write_report(spec, run_dirs, args.scale)
    print(md.read_text())
    print(f"written: {md} and {md.with_suffix('.csv')}")
    return code


if __name__ == "__main__":
    sys.exit(main())
