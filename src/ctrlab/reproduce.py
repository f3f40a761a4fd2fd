"""Reproduce one paper table or figure: run its experiment as one Hydra multirun, then write the report.

    python -m ctrlab.reproduce dynint/table1 --scale smoke [--data criteo,synthetic_avazu,...] [--fresh] [overrides]

(``make reproduce-table-1`` calls this.) Models are the table's rows that have a config in
``configs/model/``; rows without one are reported as "not yet implemented".

A reproduction lives in one stable folder, ``logs/<experiment>/<scale>/<data>[-<hash of --models and
overrides>]/<sweep>/<job number>``, so that running the same command again resumes it: before launching, each
job's folder is compared with the job's config as composed now (its ``config_resolved.yaml`` minus ``paths``
and ``ckpt_path``). A job that completed with the same config is skipped, one that was cut (no metrics.json)
resumes from its ``checkpoints/last.ckpt``, and a failed, stale (config changed) or unstarted one runs from
scratch in an emptied folder. ``plan.json`` in the sweep folder tells each job what to do
(``ctrlab.reproduce_job``). ``--fresh`` deletes the folder first.

The report goes to ``results/<paper>/<table>.<scale>.md`` only when every job completed; otherwise it is
written into the reproduction's folder, says how many jobs failed or are missing, and the command exits
non-zero. ``CTRLAB_ROOT`` (as for ``paths.root_dir``) moves ``logs/`` and ``results/`` elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ctrlab.report import write_table
from ctrlab.report.collect import collect
from ctrlab.report.figures import searched_artifacts, write_architecture_figure, write_figure, write_tradeoff
from ctrlab.report.paper import get_table
from ctrlab.report.tables import row_id
from ctrlab.run_config import ConfigError, check_paper_setting

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
PLAN_FILE = "plan.json"
# not part of what a job computes: where it writes, and the checkpoint a resumed job started from
UNCOMPARED_KEYS = ("paths", "ckpt_path")
EXPERIMENTS = sorted(
    str(p.relative_to(CONFIGS / "experiment").with_suffix("")) for p in (CONFIGS / "experiment").rglob("*.yaml")
)


def experiment_spec(experiment: str) -> dict:
    """The experiment file's ``report`` block (paper, key, kind, ...) plus its ``paper_row_configs``."""
    spec = yaml.safe_load((CONFIGS / "experiment" / f"{experiment}.yaml").read_text())
    if "report" not in spec:
        raise SystemExit(f"configs/experiment/{experiment}.yaml has no `report:` block (paper, key, kind)")
    return {
        "kind": "table",
        **spec["report"],
        "row_configs": spec.get("paper_row_configs") or {},
        "grids": spec.get("grids") or {},
        "scale_overrides": spec.get("scale_overrides") or {},
        "model_overrides": spec.get("model_overrides") or {},
        "stage_rows": spec.get("stage_rows") or {},
        "derived_rows": spec.get("derived_rows") or {},
        "models": spec.get("models"),  # a figure's models, where its sweeper params do not name them
    }


def implemented_models(
    paper: str, table: str, row_configs: dict[str, str], stage_rows: dict[str, dict] | None = None
) -> list[str]:
    """The model configs of the table's rows, in the paper's order, for the rows that have one; a row of
    ``stage_rows`` (a chain of stages, e.g. search -> re-train) is named by its row key, when its model exists."""
    stage_rows = stage_rows or {}
    t = get_table(paper, table)
    rows = [row_id(t, row) for row in t.rows]
    configs = dict.fromkeys(r if r in stage_rows else row_configs.get(r, r) for r in rows)
    model = {c: stage_rows[c]["model"] if c in stage_rows else c for c in configs}
    return [c for c in configs if (CONFIGS / "model" / f"{model[c]}.yaml").exists()]


def write_report(spec: dict, run_dirs: list[Path], scale: str, out_dir: Path, expected: int | None = None) -> Path:
    """Write the experiment's report into ``out_dir``: a table with rows keyed by model (``kind: table``) or by a
    swept value (``sweep``), or a figure of a metric against a swept value (``figure``), against steps
    (``curve``), of AUC against parameters (``tradeoff``) or of the jobs' searched architectures
    (``architecture_figure``), or AIM Table 6's kept embedding size per field (``field_stats``). ``expected``:
    how many jobs the reproduction has, for the table to count the missing ones."""
    if spec["kind"] in ("figure", "curve"):
        return write_figure(spec, run_dirs, out_dir, scale)
    if spec["kind"] == "tradeoff":
        return write_tradeoff(spec, run_dirs, out_dir, scale)
    if spec["kind"] == "architecture_figure":
        return write_architecture_figure(spec, run_dirs, out_dir, scale)
    if spec["kind"] == "field_stats":  # AIM Table 6: per field, the embedding size the jobs' EDS searches kept
        from ctrlab.report.aim_architecture import write_table6  # torch and the models: only for this report

        return write_table6(spec, searched_artifacts(run_dirs), out_dir, scale)
    if spec["kind"] not in ("table", "sweep"):
        raise SystemExit(
            f"unknown report kind {spec['kind']!r}; allowed: table, sweep, figure, curve, tradeoff, "
            "architecture_figure, field_stats"
        )
    return write_table(
        spec["paper"],
        spec["key"],
        run_dirs,
        out_dir,
        CONFIGS,
        scale,
        {**spec["row_configs"], **{row: r["model"] for row, r in spec["stage_rows"].items()}},  # a row's model
        expected=expected,
        derived_rows=spec["derived_rows"],
    )


def _sweeps(spec: dict, models: str | None, scale: str) -> dict[str, list[str]]:
    """The multiruns to launch, by folder name -> their overrides: one for the whole experiment, except for
    the models that run on their own: at ``scale=paper`` each model with a grid (the experiment's ``grids``)
    runs its grid (``grid=<name>``; the report then keeps each model's best point on val/auc); at any scale
    a model the experiment's ``model_overrides`` (its paper's setting of a baseline) or ``scale_overrides.<scale>``
    (a smaller setting of a model too slow for that budget; the experiment file says why) names runs with those
    overrides; and a row of ``stage_rows`` runs its chain of stages (``model=<model> +search=<chain>
    paper_row=<row>``, each job a ``ctrlab.search.stages.run_stage_job``), with the row's own ``overrides``."""
    model_list = models.split(",") if models else []
    grids = spec["grids"] if scale == "paper" else {}
    stage_rows = spec.get("stage_rows") or {}
    own = {
        m: [*(spec.get("model_overrides") or {}).get(m, []), *((spec.get("scale_overrides") or {}).get(scale) or {})
            .get(m, [])]
        for m in model_list
    }  # fmt: skip
    alone = [m for m in model_list if m in grids or own[m] or m in stage_rows]
    rest = [m for m in model_list if m not in alone]
    sweeps = {}
    for m in alone:
        if m in stage_rows:
            row = stage_rows[m]
            head = [f"model={row['model']}", f"+search={row['search']}", f"paper_row={m}", *row.get("overrides", [])]
        else:
            head = [f"model={m}", *([f"grid={grids[m]}"] if m in grids else [])]
        sweeps[m.replace("/", "_")] = [*head, *own[m]]
    if rest or not model_list:
        sweeps["all"] = [f"model={','.join(rest)}"] if rest else []
    return sweeps


def check_columns(experiment: str, data: str | None) -> None:
    """Refuse, before any job, a data column (``data`` or the experiment's own) that the experiment's paper setting
    has no column for (``run_config.check_paper_setting`` on each column's composed config)."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        own = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        if own.get("paper_setting") is None:
            return
        columns = data or str((own.hydra.sweeper.params or {}).get("data") or own.hydra.runtime.choices.data)
        for column in columns.split(","):
            try:
                check_paper_setting(compose("train", overrides=[f"experiment={experiment}", f"data={column}"]))
            except ConfigError as err:
                raise SystemExit(f"{experiment}, data={column}: {err}") from None


def _output_root() -> Path:
    # read at call time, so that a test can move logs/ and results/ with the environment variable
    return Path(os.environ.get("CTRLAB_ROOT") or ROOT).resolve()


def reproduction_dir(experiment: str, scale: str, data: str | None, models: str | None, overrides: list[str]) -> Path:
    """The stable folder of one reproduction: experiment x scale x data, plus a hash of the model list and the
    overrides when given (another choice of models or values is another reproduction)."""
    folder = (data or "default_data").replace(",", "+")
    if models or overrides:
        folder += "-" + hashlib.sha256(json.dumps([models, overrides]).encode()).hexdigest()[:8]
    return _output_root() / "logs" / experiment.replace("/", "_") / scale / folder


def job_overrides(overrides: list[str]) -> list[list[str]]:
    """The jobs of ``python -m ctrlab.train -m <overrides>`` in the order Hydra's basic sweeper numbers them:
    the composed ``hydra.sweeper.params`` (experiment, scale) first, then the command line's overrides.
    Each job is its list of task overrides (``hydra.*`` ones excluded, as Hydra records them)."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    params = compose("train", overrides=fixed, return_hydra_config=True).hydra.sweeper.params or {}
    task = [o for o in overrides if not o.startswith("hydra.")]
    [jobs] = BasicSweeper.split_arguments(parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + task), None)
    return jobs


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in UNCOMPARED_KEYS}


def job_action(job_dir: Path, overrides: list[str]) -> tuple[str, str]:
    """What a reproduction does with one job, and why: ``skip`` (completed with the config ``overrides`` compose
    to now), ``resume`` (same config, cut before metrics.json, has last.ckpt) or ``run`` (from scratch)."""
    if not job_dir.is_dir():
        return "run", "new"
    try:
        before = yaml.safe_load((job_dir / "config_resolved.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return "run", "never got as far as its config"
    now = OmegaConf.to_container(compose("train", overrides=[*overrides, f"paths.output_dir={job_dir}"]), resolve=True)
    if _comparable(before) != _comparable(now):
        return "run", "config changed"
    try:
        status = json.loads((job_dir / "metrics.json").read_text()).get("status")
    except (OSError, json.JSONDecodeError):
        status = None
    if status == "completed":
        return "skip", "done"
    if status is None and (job_dir / "checkpoints" / "last.ckpt").exists():
        return "resume", "cut"
    if status is None and (job_dir / "stages").is_dir():  # a chain of stages: its finished stages are reused
        return "resume", "cut between stages"
    return "run", f"status {status}" if status else "cut before its first checkpoint"


def plan_sweep(sweep_dir: Path, overrides: list[str]) -> list[dict[str, Any]]:
    """Decide every job of one multirun (``job_action``), empty the folders of jobs that run from scratch, write
    ``plan.json`` for ``ctrlab.reproduce_job`` and print what will happen. Returns the plan, by job number."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        jobs = job_overrides(overrides)
        plan = []
        for num, job in enumerate(jobs):
            action, reason = job_action(sweep_dir / str(num), job)
            plan.append({"overrides": job, "action": action, "reason": reason})
    for num, entry in enumerate(plan):
        if entry["action"] == "run" and (sweep_dir / str(num)).exists():
            shutil.rmtree(sweep_dir / str(num))  # stale outputs would mix with the new run's (best-v1.ckpt, logs)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / PLAN_FILE).write_text(json.dumps({str(n): e for n, e in enumerate(plan)}, indent=1))
    print(_plan_summary(sweep_dir, plan), flush=True)
    return plan


def _plan_summary(sweep_dir: Path, plan: list[dict[str, Any]]) -> str:
    done = sum(e["action"] == "skip" for e in plan)
    parts = [f"{sweep_dir}: {done} of {len(plan)} jobs done with the same config, skipping them"]
    parts += [
        f"resuming job {n} " + ("from last.ckpt" if e["reason"] == "cut" else "with its finished stages")
        for n, e in enumerate(plan)
        if e["action"] == "resume"
    ]
    reruns = {}
    for e in plan:
        if e["action"] == "run" and e["reason"] != "new":
            reruns[e["reason"]] = reruns.get(e["reason"], 0) + 1
    fresh = sum(e["action"] == "run" for e in plan)
    if fresh:
        parts.append(f"running {fresh}" + (f" ({', '.join(f'{n} {r}' for r, n in reruns.items())})" if reruns else ""))
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--scale", choices=["smoke", "default", "paper"], default="smoke")
    parser.add_argument("--data", help="comma-separated data configs, one per paper column")
    parser.add_argument(
        "--models", help="comma-separated model configs (default: a table's implemented rows; a sweep's own list)"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete this reproduction's folder and run every job again (default: resume)",
    )
    args, overrides = parser.parse_known_args(argv)  # the rest are Hydra overrides, e.g. trainer.max_epochs=2

    spec = experiment_spec(args.experiment)
    models = args.models
    if models is None and spec["models"]:  # a figure of several models, some of them chains of stages
        models = ",".join(spec["models"])
    elif models is None and spec["kind"] == "table":  # a sweep names its models in the experiment file
        found = implemented_models(spec["paper"], spec["key"], spec["row_configs"], spec["stage_rows"])
        models = ",".join(m for m in found if m not in spec["derived_rows"])  # filled from other rows' runs
    check_columns(args.experiment, args.data)
    root = reproduction_dir(args.experiment, args.scale, args.data, args.models, overrides)
    if args.fresh and root.exists():
        print(f"--fresh: deleting {root}", flush=True)
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    # the hash in the folder's name is opaque: the folder says what it reproduces
    (root / "command.json").write_text(json.dumps(sys.argv[1:] if argv is None else argv))
    common = [f"experiment={args.experiment}", f"scale={args.scale}", *([f"data={args.data}"] if args.data else [])]
    code, job_dirs = 0, []
    try:
        for name, sweep in _sweeps(spec, models, args.scale).items():
            multirun = [*common, *sweep, *overrides]
            try:
                plan = plan_sweep(root / name, multirun)
            except Exception as err:  # noqa: BLE001 — a config error, printed; the multirun would fail the same way
                print(f"the sweep {name} cannot be composed: {type(err).__name__}: {err}", flush=True)
                code = 1
                continue
            job_dirs += [root / name / str(n) for n in range(len(plan))]
            if all(e["action"] == "skip" for e in plan):
                continue
            cmd = [sys.executable, "-m", "ctrlab.reproduce_job", "-m", f"hydra.sweep.dir={root / name}", *multirun]
            print("running:", " ".join(cmd), flush=True)
            code = max(code, subprocess.call(cmd, cwd=ROOT))
            if code != 0:
                print(f"the multirun exited with {code}", flush=True)
    except KeyboardInterrupt:  # Ctrl-C reached the multirun too; report what finished
        print("interrupted", flush=True)
        code = 130
    return _report(spec, args.scale, root, job_dirs, code)


def _report(spec: dict, scale: str, root: Path, job_dirs: list[Path], code: int) -> int:
    """Write the report of the jobs that exist: into results/ when every job completed, else into the
    reproduction's folder, saying how many did not; returns the exit code."""
    existing = [j for j in job_dirs if j.is_dir()]
    if not existing:  # no multirun got as far as its first job (a config error, printed above)
        print("no runs to report; the report was not written", flush=True)
        return code or 1
    collection = collect(existing)
    failed = sum(s.reason == "failed" for s in collection.skipped)
    incomplete = len(job_dirs) - (len(collection.runs) + failed)
    partial = failed or incomplete
    out_dir = root if partial else _output_root() / "results" / spec["paper"]
    md = write_report(spec, existing, scale, out_dir, expected=len(job_dirs))
    if md.suffix == ".md":
        print(md.read_text())
    print(f"written: {md} and {md.with_suffix('.csv')}")
    if partial:
        print(
            f"partial: {failed} of {len(job_dirs)} jobs failed and {incomplete} are missing; the report is "
            f"only in {root} (results/ is untouched). Run the same command again to resume.",
            flush=True,
        )
        return code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
