"""Paper figures from runs: a metric against one swept parameter, or validation curves per series.

The papers print these figures without numbers, so a figure shows our values with the paper's axes, and
the paper's own claim about it is printed underneath, for the reader to compare. Two kinds:

- ``figure``: x = the value each run names as its ``paper_row`` (e.g. DGP's kernel size), y = test AUC and
  log loss, mean ± std over every run at that x (seeds, and models where the paper averages several).
- ``curve``: x = training step, one line per ``paper_row`` value (e.g. the orthogonal regularisation
  rate), y = validation AUC and log loss from each run's CSV log, averaged over runs.
- ``tradeoff`` (OptInter Figure 4): x = parameters, y = test AUC, one point per model x memorized-embedding
  size s2 (``write_tradeoff``).
- ``architecture_figure`` (OptInter Figures 5, 6): the searched artifacts of the jobs handed to
  ``ctrlab.report.architecture_figures`` (``write_architecture_figure``).

Written as ``<out>/<key>.png``, ``.csv`` (the plotted numbers) and ``.md`` (the claim, the data, the budget).
On a synthetic stand-in the oracle (the true click probability's test AUC and log loss) is drawn as a dashed
line and named in the .md, so the curve's distance from what the data allows is visible.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed

from ctrlab.report.collect import collect
from ctrlab.report.paper import dataset_name, get_table
from ctrlab.report.tables import HONESTY_NOTE
from ctrlab.report.truth import Oracle, oracles
from ctrlab.utils import write_text_atomic

METRICS = (("auc", "AUC"), ("logloss", "LogLoss"))


def _points(runs: pl.DataFrame) -> pl.DataFrame:
    """Mean/std/n of the test metrics per x value. Columns: x, {metric}_mean, {metric}_std, n."""
    aggs = [
        agg
        for m, _ in METRICS
        for agg in (pl.col(f"test/{m}").mean().alias(f"{m}_mean"), pl.col(f"test/{m}").std().alias(f"{m}_std"))
    ]
    return (
        runs.with_columns(pl.col("model").cast(pl.Float64).alias("x"))
        .group_by("x")
        .agg(*aggs, pl.len().alias("n"))
        .sort("x")
    )


def _curves(runs: pl.DataFrame) -> pl.DataFrame:
    """Validation metrics against the step, averaged per series value. Columns: series, step, auc, logloss, n."""
    frames = []
    for job, series in runs.select("job", "model").iter_rows():
        log = Path(job) / "csv" / "metrics.csv"
        if not log.exists():
            continue
        # keep="first": after fitting, the best checkpoint is validated again at the last step; that is no point
        # of the training curve
        frames.append(
            pl.read_csv(log)
            .filter(pl.col("val/auc").is_not_null())
            .unique(subset="step", keep="first", maintain_order=True)
            .select(
                pl.lit(float(series)).alias("series"),
                "step",
                pl.col("val/auc").alias("auc"),
                pl.col("val/logloss").alias("logloss"),
            )
        )
    if not frames:
        return pl.DataFrame(
            schema={"series": pl.Float64, "step": pl.Int64, "auc": pl.Float64, "logloss": pl.Float64, "n": pl.UInt32}
        )
    return (
        pl.concat(frames)
        .group_by("series", "step")
        .agg(pl.col("auc").mean(), pl.col("logloss").mean(), pl.len().alias("n"))
        .sort("series", "step")
    )


def _plot(spec: dict[str, Any], table: pl.DataFrame, path: Path, oracle: dict[str, Oracle]) -> None:
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2)
    for ax, (metric, name) in zip(axes, METRICS, strict=True):
        if spec["kind"] == "curve":
            for series in table["series"].unique().sort().to_list():
                part = table.filter(pl.col("series") == series)
                ax.plot(part["step"], part[metric], marker="o", ms=3, label=f"{spec['series_label']} = {series:g}")
            ax.set_xlabel("training step")
            ax.legend(fontsize=7)
        else:
            ax.errorbar(
                table["x"], table[f"{metric}_mean"], yerr=table[f"{metric}_std"].fill_null(0.0), marker="o", capsize=3
            )
            if spec.get("log2_x"):
                ax.set_xscale("log", base=2)
            ax.set_xticks(table["x"].to_list(), [f"{v:g}" for v in table["x"]])
            ax.set_xlabel(spec["x_label"])
        for dataset, o in oracle.items():
            ax.axhline(o.mean[metric], color="gray", linestyle="--", label=f"oracle ({dataset_name(dataset)})")
        if oracle:
            ax.legend(fontsize=7)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{spec['label']} (ours): {spec['caption']}", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


def write_figure(spec: dict[str, Any], run_dirs: list[Path], out_dir: Path, scale: str) -> Path:
    """Write ``<out_dir>/<key>.<scale>.{png,csv,md}`` from the runs (a scale's figure never overwrites another's,
    as tables); return the .md path."""
    collection = collect(run_dirs)
    runs = collection.runs.filter(pl.col("model").is_not_null())
    table = _curves(runs) if spec["kind"] == "curve" else _points(runs)
    found = oracles(runs, sorted(set(runs["paper_dataset"].drop_nulls())), [m for m, _ in METRICS])
    oracle = {d: o for d, o in found.items() if o is not None}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{spec['key']}.{scale}"
    _plot(spec, table, out_dir / f"{stem}.png", oracle)
    write_text_atomic(out_dir / f"{stem}.csv", table.write_csv())
    data = sorted(set(runs["data_description"].drop_nulls().to_list()))
    failed = sum(s.reason == "failed" for s in collection.skipped)
    lines = [
        *figure_head(spec, stem),
        f"- **Runs**: {runs.height} completed ({', '.join(sorted(set(runs['config'].drop_nulls())))}), "
        f"{failed} failed; scale `{scale}`; seeds {', '.join(map(str, sorted(set(runs['seed'].drop_nulls()))))}.",
        f"- **Data**: {'; '.join(data) or 'no runs'}",
        *(
            f"- **Oracle** (the stand-in's true click probability, {dataset_name(d)} test split; dashed): "
            + ", ".join(f"{name} {o.mean[m]:.4f}" for m, name in METRICS)
            + (f" — {o.disagreement()}" if not o.agree else "")
            for d, o in oracle.items()
        ),
        f"- **Note**: {HONESTY_NOTE}",
        "",
        f"The plotted numbers are in `{stem}.csv`.",
    ]
    md = out_dir / f"{stem}.md"
    write_text_atomic(md, "\n".join(lines) + "\n")
    return md


def _run_config(job: str) -> dict[str, Any]:
    return yaml.safe_load((Path(job) / "config_resolved.yaml").read_text()) or {}


def _tradeoff_points(runs: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """One point per model config x memorized-embedding size s2 (``model.cross_dim``, from each run's config):
    mean parameters (M) and mean ± std test AUC over seeds. Columns: series, model, s2, params_m, auc_mean,
    auc_std, n."""
    rows = [
        {"model": config, "s2": _run_config(job)["model"]["cross_dim"], "params": params, "auc": auc}
        for job, config, params, auc in runs.select("job", "config", "params", "test/auc").iter_rows()
    ]
    frame = pl.DataFrame(rows, schema={"model": pl.String, "s2": pl.Int64, "params": pl.Int64, "auc": pl.Float64})
    return (
        frame.group_by("model", "s2")
        .agg(
            (pl.col("params").mean() / 1e6).alias("params_m"),
            pl.col("auc").mean().alias("auc_mean"),
            pl.col("auc").std().alias("auc_std"),
            pl.len().alias("n"),
        )
        .with_columns(
            pl.format("{}({})", pl.col("model").replace_strict(names, default=pl.col("model")), "s2").alias("series")
        )
        .sort("model", "s2", descending=[False, True])
        .select("series", "model", "s2", "params_m", "auc_mean", "auc_std", "n")
    )


def write_tradeoff(spec: dict[str, Any], run_dirs: list[Path], out_dir: Path, scale: str) -> Path:
    """OptInter Figure 4: test AUC against parameters, one point per model x s2 (e.g. ``OptInter-M(10)``,
    ``OptInter(5)``), written as ``<out_dir>/<key>.<scale>.{png,csv,md}``; returns the .md path."""
    collection = collect(run_dirs)
    runs = collection.runs.filter(pl.col("config").is_not_null())
    names = {r["model"]: r["name"] for r in get_table(spec["paper"], spec.get("names_from", "table5")).rows}
    points = _tradeoff_points(runs, names)
    found = oracles(runs, sorted(set(runs["paper_dataset"].drop_nulls())), ["auc"])
    oracle = {d: o for d, o in found.items() if o is not None}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{spec['key']}.{scale}"
    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    for model in points["model"].unique(maintain_order=True).to_list():
        part = points.filter(pl.col("model") == model)
        ax.errorbar(part["params_m"], part["auc_mean"], yerr=part["auc_std"].fill_null(0.0), marker="o", capsize=3,
                    linestyle="", label=names.get(model, model))  # fmt: skip
        for series, x, y in part.select("series", "params_m", "auc_mean").iter_rows():
            ax.annotate(series, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for dataset, o in oracle.items():
        ax.axhline(o.mean["auc"], color="gray", linestyle="--", label=f"oracle ({dataset_name(dataset)})")
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("AUC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"{spec['label']} (ours): {spec['caption']}", fontsize=9)
    fig.tight_layout()
    tmp = out_dir / f".{stem}.tmp.png"
    fig.savefig(tmp, dpi=120)
    tmp.replace(out_dir / f"{stem}.png")
    write_text_atomic(out_dir / f"{stem}.csv", points.write_csv())
    failed = sum(s.reason == "failed" for s in collection.skipped)
    lines = [
        *figure_head(spec, stem),
        f"- **Runs**: {runs.height} completed, {failed} failed; scale `{scale}`; seeds "
        f"{', '.join(map(str, sorted(set(runs['seed'].drop_nulls()))))}.",
        f"- **Data**: {'; '.join(sorted(set(runs['data_description'].drop_nulls().to_list()))) or 'no runs'}",
        *(f"- **Oracle** ({dataset_name(d)} test AUC; dashed): {o.mean['auc']:.4f}" for d, o in oracle.items()),
        f"- **Note**: {HONESTY_NOTE}",
        "",
        *_md_points(points),
    ]
    md = out_dir / f"{stem}.md"
    write_text_atomic(md, "\n".join(lines) + "\n")
    return md


def _md_points(points: pl.DataFrame) -> list[str]:
    lines = ["| point | params (M) | test AUC | n |", "|---|---:|---:|---:|"]
    for series, params, auc, std, n in points.select("series", "params_m", "auc_mean", "auc_std", "n").iter_rows():
        lines.append(f"| {series} | {params:.4f} | {auc:.4f}{f' ± {std:.4f}' if std is not None else ''} | {n} |")
    return lines


def searched_artifacts(run_dirs: list[Path]) -> list[Path]:
    """The architecture artifact each completed job searched (a stage job's ``searched_architecture``, else the
    architecture it trained), in job order."""
    runs = collect(run_dirs).runs
    paths = []
    for job in runs["job"].to_list():
        metrics = json.loads((Path(job) / "metrics.json").read_text())
        arch = metrics.get("searched_architecture") or metrics.get("architecture") or {}
        if arch.get("path"):
            paths.append(Path(arch["path"]))
    return paths


def write_architecture_figure(spec: dict[str, Any], run_dirs: list[Path], out_dir: Path, scale: str) -> Path:
    """OptInter Figures 5 and 6 from the searched artifacts of the jobs (``ctrlab.report.architecture_figures``):
    ``figure: mi_by_method`` (Figure 5: every artifact, one per data column and seed) or ``figure: mi_heatmap``
    (Figure 6: the first job's artifact, written as ``<key>.<scale>``, as Figure 5's own ``figure5.<scale>``);
    AIM Figures 7 and 8 (``ctrlab.report.aim_architecture``): ``figure: alpha_statistics_auc`` or
    ``function_frequency``, every artifact. Returns the path the figure function returns (OptInter: its .png;
    AIM: its .md; the .csv beside it)."""
    artifacts = searched_artifacts(run_dirs)
    if not artifacts:
        raise ValueError(f"{spec['key']}: no job wrote an architecture artifact; nothing to plot")
    figures = importlib.import_module("ctrlab.report.architecture_figures")
    if spec["figure"] == "mi_by_method":
        return figures.write_mi_by_method(artifacts, Path(out_dir), scale)
    if spec["figure"] == "mi_heatmap":
        return figures.write_mi_heatmap(artifacts[0], Path(out_dir), scale, stem=f"{spec['key']}.{scale}")
    aim = importlib.import_module("ctrlab.report.aim_architecture")
    if spec["figure"] == "alpha_statistics_auc":  # AIM Figure 7: every job's order-2 interaction search
        return aim.write_figure7(spec, artifacts, Path(out_dir), scale)
    if spec["figure"] == "function_frequency":  # AIM Figure 8: every job's highest-order interaction search
        return aim.write_figure8(spec, artifacts, Path(out_dir), scale)
    raise ValueError(
        f"{spec['key']}: report.figure = {spec['figure']!r}; allowed: mi_by_method, mi_heatmap, alpha_statistics_auc, "
        "function_frequency"
    )


def figure_head(spec: dict, stem: str) -> list[str]:
    """The first lines of a figure's report: title, the paper's caption, the image (``<stem>.png``, stem =
    ``<key>.<scale>``) and the paper's claim."""
    return [
        f"# {spec['paper']} {spec['key']} ({spec['label']}): reproduced",
        "",
        f"*{spec['caption']}*",
        "",
        f"![{spec['label']}]({stem}.png)",
        "",
        f"- **Paper's claim** (the figure prints no numbers): {spec['claim']}",
    ]
