"""Paper figures from runs: a metric against one swept parameter, or validation curves per series.

The papers print these figures without numbers, so a figure shows our values with the paper's axes, and
the paper's own claim about it is printed underneath, for the reader to compare. Two kinds:

- ``figure``: x = the value each run names as its ``paper_row`` (e.g. DGP's kernel size), y = test AUC and
  log loss, mean ± std over every run at that x (seeds, and models where the paper averages several).
- ``curve``: x = training step, one line per ``paper_row`` value (e.g. the orthogonal regularisation
  rate), y = validation AUC and log loss from each run's CSV log, averaged over runs.

Written as ``<out>/<key>.png``, ``.csv`` (the plotted numbers) and ``.md`` (the claim, the data, the budget).
On a synthetic stand-in the oracle (the true click probability's test AUC and log loss) is drawn as a dashed
line and named in the .md, so the curve's distance from what the data allows is visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed

from ctrlab.report.collect import collect
from ctrlab.report.paper import dataset_name
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
    """Write ``<out_dir>/<key>.{png,csv,md}`` from the runs; return the .md path."""
    collection = collect(run_dirs)
    runs = collection.runs.filter(pl.col("model").is_not_null())
    table = _curves(runs) if spec["kind"] == "curve" else _points(runs)
    found = oracles(runs, sorted(set(runs["paper_dataset"].drop_nulls())), [m for m, _ in METRICS])
    oracle = {d: o for d, o in found.items() if o is not None}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = spec["key"]
    _plot(spec, table, out_dir / f"{key}.png", oracle)
    write_text_atomic(out_dir / f"{key}.csv", table.write_csv())
    data = sorted(set(runs["data_description"].drop_nulls().to_list()))
    failed = sum(s.reason == "failed" for s in collection.skipped)
    lines = [
        f"# {spec['paper']} {key} ({spec['label']}): reproduced",
        "",
        f"*{spec['caption']}*",
        "",
        f"![{spec['label']}]({key}.png)",
        "",
        f"- **Paper's claim** (the figure prints no numbers): {spec['claim']}",
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
        f"The plotted numbers are in `{key}.csv`.",
    ]
    md = out_dir / f"{key}.md"
    write_text_atomic(md, "\n".join(lines) + "\n")
    return md
