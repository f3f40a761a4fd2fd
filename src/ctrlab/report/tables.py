"""Paper-vs-reproduced results tables: one row per paper row, cells ``ours | paper | Δ`` per dataset x metric.

Written as ``<out>/<table>.<scale>.md`` (for people) and ``<out>/<table>.<scale>.csv`` (one row per model x
dataset x metric), so that a smoke run never overwrites a default-scale table.

Significance: in a table with the paper's own models (``proposed``), each of their cells is tested against our
best baseline row of the same dataset and metric (the best mean among the other rows) with a two-tailed Welch
t-test over seeds; p below the paper's threshold (``paper_tables.yaml``: ``significance``) marks the cell
▲ (better) or ▼ (worse). Fewer than 2 seeds on either side: no test.

On a synthetic stand-in each dataset's table also has an ``Oracle (true model)`` row and every row its gap to it;
under each table, the plateau check and the table's planted-truth claims (``ctrlab.report.truth``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from ctrlab.report.collect import RECOVERY_KEYS, Collection, SkippedJob, collect
from ctrlab.report.paper import PaperTable, dataset_name, get_table, metric_name, not_reproducible
from ctrlab.report.truth import (
    ClaimResult,
    Oracle,
    Plateau,
    better_sign,
    check_claim,
    claims_alpha,
    get_claims,
    oracles,
    plateau_line,
    plateaus,
    welch_p_value,
)
from ctrlab.utils import write_text_atomic

SPLIT = "test"  # the papers print test-set numbers
SELECT_ON = "val/auc"  # a hyper-parameter grid's point is chosen on the validation split, never on test
ORACLE_METRICS = ("auc", "logloss")  # what every stand-in's oracle scores; tested for significance
# a table metric -> the oracle entry that scores it (``oracle/<entry>`` in the runs): the whole test split's AUC and
# log loss, and the sequence stand-in's test groups (DPN Table 5; data/synthetic_sequence.py)
ORACLE_OF = {"auc": "auc", "logloss": "logloss", "auc_all": "auc", "auc_new": "auc_new", "auc_infreq": "auc_infreq"}
# what a run measures that a paper table also prints -> the run's column (collect.SCHEMA). memorize / factorize /
# naive: how many field pairs the run's (searched) architecture gave each OptInter method (Table VI). Params are
# counted as the paper counts them (PARAMS_COUNTED) and shown in the unit it prints (its rows' params_unit).
METRIC_COLUMNS = {"auc": f"{SPLIT}/auc", "logloss": f"{SPLIT}/logloss", "params": "params",
                  "memorize": "arch/memorize", "factorize": "arch/factorize", "naive": "arch/naive",
                  # DPN Table 5: "All" = the whole test split; New / inFreq = lit/behaviour_groups.py
                  "auc_all": f"{SPLIT}/auc", "auc_new": f"{SPLIT}/auc_new",
                  "auc_infreq": f"{SPLIT}/auc_infreq",
                  # AIM Table 3: the kept share of the highest order's interactions (collect.fi_ratio_pct)
                  "fi_ratio_pct": "fi_ratio_pct",
                  # AIM Tables 7-9 (kind complexity): minutes per epoch, of the run (a chain: its last stage) and per
                  # kind of stage, and the inference seconds (collect.SCHEMA)
                  "train_min": "train_min", "inference_s": "inference_s",
                  "search_interaction_if_min": "stage_min/search_interaction_if",
                  "search_embed_min": "stage_min/search_embed", "retrain_min": "stage_min/retrain"}  # fmt: skip
# a column computed from other rows' means, not measured by a run: metric -> (the metric and the row it is relative
# to). AIM Table 2's "Rel. Impr" is "the relative AUC improvement over FM model" (its caption), in %: 100 (AUC_row -
# AUC_FM) / AUC_FM of the means, which gives every printed value (FwFM on Avazu: 100 (0.7822 - 0.7793) / 0.7793 = 0.37)
RELATIVE_METRICS = {"rel_impr_pct": ("auc", "fm")}
# DPN leaves the embedding tables out of its parameter counts (Tables 2, 9, 10, 12); OptInter and AIM count all
PARAMS_COUNTED = {"dpn": "dense_params"}
PARAMS_UNITS = {"k": 1e3, "M": 1e6, "1e7": 1e7}  # AIM Table 5 counts in units of 10^7
PRIVATE_DATASETS = frozenset({"huawei"})  # AIM's Huawei column: the company's data, not available to anyone else
COUNT_DECIMALS = 1  # a method count, mean over seeds
# a complexity table (AIM Tables 7-9) measured on a small stand-in: the paper's 1 or 2 decimals would print 0.0
COMPLEXITY_DECIMALS = 4
# where each paper measured its complexity tables' times (kind complexity)
PAPER_HARDWARE = {"aim": "one NVIDIA 1080Ti GPU, the whole Avazu training set per epoch (AIM §4.5)"}
FALLBACK_DECIMALS = 4
CSV_COLUMNS = (
    "model",
    "name",
    "dataset",
    "metric",
    "ours_mean",
    "ours_std",
    "n",
    "paper",
    "diff",
    "oracle",
    "gap_to_oracle",
    "status",
    "best_baseline",
    "p_value",
    "significance",
    "data_description",
)
ORACLE_ROW = "Oracle (true model)"
MARKS = {"better": "▲", "worse": "▼"}
HONESTY_NOTE = (
    "our numbers come from the data and budget named above; on stand-in or subsampled data they "
    "are not comparable to the paper's in absolute value."
)


@dataclass(frozen=True)
class Cell:
    """One model x dataset x metric: our mean/std over ``n`` seeds beside the paper's value."""

    model: str
    name: str
    dataset: str
    metric: str
    ours_mean: float | None
    ours_std: float | None
    n: int
    paper: float | None
    status: str  # ok | failed | not run | private data | not yet implemented | not reproducible (reason in the header)
    best_baseline: str | None = None  # proposed rows: the row key they are tested against
    p_value: float | None = None  # proposed rows: Welch t-test against best_baseline; None when not tested
    significance: str = ""  # "better" | "worse" where p_value is below the paper's threshold
    oracle: float | None = None  # the true click probability's value on this data column (stand-ins only)

    @property
    def diff(self) -> float | None:
        """Ours minus paper, where both exist."""
        return None if self.ours_mean is None or self.paper is None else self.ours_mean - self.paper

    @property
    def gap_to_oracle(self) -> float | None:
        """Ours minus the oracle, where both exist: below 0 for AUC, above 0 for log loss."""
        return None if self.ours_mean is None or self.oracle is None else self.ours_mean - self.oracle


@dataclass(frozen=True)
class ResultTable:
    """A paper table filled with our runs, plus what the header and footer must say about them."""

    table: PaperTable
    metrics: tuple[str, ...]
    cells: tuple[Cell, ...]  # paper row order, then dataset, then metric
    data: dict[str, tuple[str, str] | None]  # dataset -> (data config, data description) of its runs
    scale: str
    seeds: tuple[int, ...]
    epochs: tuple[int, int] | None
    completed: int
    skipped: tuple[SkippedJob, ...]
    expected: int | None  # the jobs of the reproduction, when known: the ones never started count as missing
    ignored: dict[str, int]  # "model on dataset" of runs outside this table -> count
    configs: tuple[str, ...]  # the model configs whose runs fill the table
    optimizers: dict[str, tuple[str, ...]]  # optimizer config -> the model configs run with it
    selected: dict[str, str]  # "model on dataset" -> its grid point chosen on SELECT_ON (+ grid size)
    best: dict[tuple[str, str], str]  # (dataset, metric) -> our best baseline row's name (tables with proposed rows)
    oracles: dict[str, Oracle | None]  # dataset -> the stand-in's oracle; None on real data
    planted: dict[str, str | None]  # dataset -> the stand-in's planted mechanism, as its runs record it
    plateaus: dict[tuple[str, str], Plateau]  # (row key, dataset) -> how its runs ended
    claims: dict[str, tuple[ClaimResult, ...]]  # dataset with an oracle -> the table's planted-truth claims there
    costs: dict[tuple[str, str], float | None]  # (row, dataset) -> seconds per epoch
    hardware: str | None  # what the runs' costs were measured on (their environment.json)
    inference_timing: dict[str, int] | None  # the runs' `inference_timing` (samples, batch_size), if they set one
    # (row name, dataset) -> the mean recovery scores (collect.RECOVERY_KEYS) of the row's searched architectures:
    # OptInter's share of the planted memorized / factorized / no-effect pairs given the matching method, AIM's
    # FIS / IFS / EDS scores; and how many searches (stand-ins with a planted truth only)
    recovery: dict[tuple[str, str], tuple[dict[str, float | None], int]]


def _table_metrics(table: PaperTable) -> tuple[str, ...]:
    metrics = tuple(m for m in table.metrics if m in METRIC_COLUMNS or m in RELATIVE_METRICS)
    if not metrics or not table.datasets:
        raise ValueError(
            f"{table.paper} {table.key} ({table.kind}) cannot be filled from runs: only tables with "
            f"{'/'.join(METRIC_COLUMNS)} columns per dataset can"
        )
    return metrics


def params_unit(table: PaperTable) -> str:
    """The unit the paper prints its parameter counts in (its rows' ``params_unit``): ``k`` or ``M``."""
    units = {cell["params_unit"] for row in table.rows for cell in row.values() if isinstance(cell, dict)
             and cell.get("params_unit")}  # fmt: skip
    if len(units) > 1:
        raise ValueError(f"{table.paper} {table.key} prints parameters in several units: {sorted(units)}")
    return units.pop() if units else "M"


def _value(table: PaperTable, metric: str) -> pl.Expr:
    """A run's value for a table metric, counted as the paper counts it and in the unit it prints."""
    if metric == "params":
        return pl.col(PARAMS_COUNTED.get(table.paper, "params")) / PARAMS_UNITS[params_unit(table)]
    return pl.col(METRIC_COLUMNS[metric])


def column_name(table: PaperTable, metric: str) -> str:
    """A metric's column title: the paper's own where it prints one (DPN Table 5's All / New / inFreq), parameters
    with the paper's unit (``Params (k)``)."""
    if metric == "params":
        return f"Params ({params_unit(table)})"
    return table.printed_columns.get(metric) or metric_name(metric)


def add_derived_rows(runs: pl.DataFrame, derived_rows: dict[str, dict] | None) -> pl.DataFrame:
    """Rows that another row's runs also fill (an experiment's ``derived_rows``), added as runs of their own:

    - ``{from: <row>, prefix: without_retrain/}``: the same runs' ``<prefix>test/*`` scores as this row's test
      scores (OptInter Table IX: the search model with its architecture fixed, "without re-train");
    - ``{from: <row>, all_pairs: <method>}``: the fixed architecture that gives every field pair of the same data
      ``method`` (Table VI's Naive, OptInter-M and OptInter-F rows): its counts are the searched run's pair count
      in that method, by definition, and it has no scores.
    """
    added = []
    for row, rule in (derived_rows or {}).items():
        base = runs.filter(pl.col("model") == rule["from"]).with_columns(pl.lit(row).alias("model"))
        if "prefix" in rule:
            prefix = rule["prefix"]
            base = base.with_columns(pl.col(f"{prefix}{SPLIT}/{m}").alias(f"{SPLIT}/{m}") for m in ORACLE_METRICS)
        else:
            pairs = pl.sum_horizontal(f"arch/{m}" for m in ("memorize", "factorize", "naive"))
            base = base.with_columns(
                *(pl.when(pl.lit(m == rule["all_pairs"])).then(pairs).otherwise(0).alias(f"arch/{m}")
                  for m in ("memorize", "factorize", "naive")),
                *(pl.lit(None, pl.Float64).alias(c) for c in ("params", f"{SPLIT}/auc", f"{SPLIT}/logloss")),
                *(pl.lit(None, pl.Float64).alias(f"recovery/{k}") for k in RECOVERY_KEYS),
            )  # fmt: skip
        added.append(base.select(runs.columns).cast(runs.schema))
    return pl.concat([runs, *added]) if added else runs


def _recovery(runs: pl.DataFrame, names: dict[str, str]) -> dict[tuple[str, str], tuple[dict[str, float | None], int]]:
    """(row name, dataset) -> the mean of each recovery score over the row's searches there, and their count."""
    searched = runs.filter(pl.any_horizontal(pl.col(f"recovery/{k}").is_not_null() for k in RECOVERY_KEYS))
    stats = searched.group_by("model", "paper_dataset").agg(
        *(pl.col(f"recovery/{k}").mean() for k in RECOVERY_KEYS), pl.len().alias("n")
    )
    return {
        (names.get(r[0], r[0]), r[1]): (dict(zip(RECOVERY_KEYS, r[2:-1], strict=True)), r[-1])
        for r in stats.sort("model", "paper_dataset").rows()
    }


def row_id(table: PaperTable, row: dict) -> str:
    """What a run names to fill this row: the model key, or for a sweep table the swept value (e.g. "3"). Rows
    keyed by more than one column (DPN Table 2b: model and context) append the others, e.g.
    ``fc1_plus_fc2[context=(x0, x0)]``: one model key names several rows there."""
    first, *rest = table.row_key
    extra = ", ".join(f"{k}={row[k]}" for k in rest)
    return f"{row[first]}[{extra}]" if rest else str(row[first])


def row_name(table: PaperTable, row: dict) -> str:
    """The row's printed name, with its other key columns where one name covers several rows (Table 2b's
    five "fc1 + fc2" rows differ by context)."""
    rest = table.row_key[1:]
    return ", ".join([row["name"], *(f"{k} {row[k]}" for k in rest)])


def _by_model(table: PaperTable) -> bool:
    # rows keyed by a model (and maybe more), each filled by one model config; else a sweep's values
    return table.row_key[0] == "model"


def _data_per_dataset(runs: pl.DataFrame, datasets: Iterable[str]) -> dict[str, tuple[str, str] | None]:
    data: dict[str, tuple[str, str] | None] = {}
    for dataset in datasets:
        runs_here = runs.filter(pl.col("paper_dataset") == dataset)
        used = runs_here.select("data", "data_description").unique().rows()
        if len(used) > 1:
            # one column averaging runs on different data would be meaningless
            raise ValueError(
                f"the {dataset} column mixes runs on different data: "
                + "; ".join(f"{d} ({desc})" for d, desc in used)
                + " — pass run folders of one data setup per table"
            )
        data[dataset] = used[0] if used else None
    return data


def _planted(runs: pl.DataFrame, dataset: str) -> str | None:
    # the stand-in's planted mechanism as the column's runs record it; None on real data
    found = runs.filter(pl.col("paper_dataset") == dataset)["planted_mechanism"].drop_nulls().unique().sort()
    return ", ".join(found.to_list()) or None


def select_grid_points(runs: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """Keep, per model x dataset, only the runs of the hyper-parameter grid point with the best mean ``SELECT_ON``
    over seeds (ties: the first point in sort order); runs outside a grid pass through. Returns the kept
    runs and, per gridded "model on dataset", the chosen point and how many points it beat."""
    gridded = runs.filter(pl.col("grid_point").is_not_null())
    if gridded.is_empty():
        return runs, {}
    points = (
        gridded.group_by("model", "paper_dataset", "grid_point")
        .agg(pl.col(SELECT_ON).mean().alias("score"))
        .sort("model", "paper_dataset", "score", "grid_point", descending=[False, False, True, False])
    )
    best = points.group_by("model", "paper_dataset", maintain_order=True).agg(
        pl.col("grid_point").first(), pl.col("score").first(), pl.len().alias("grid")
    )
    kept = gridded.join(
        best.select("model", "paper_dataset", "grid_point"), on=["model", "paper_dataset", "grid_point"]
    )
    selected = {f"{m} on {d}": f"`{p}` ({SELECT_ON} {score:.4f}, best of {n})" for m, d, p, score, n in best.rows()}
    return pl.concat([runs.filter(pl.col("grid_point").is_null()), kept.select(runs.columns)]), selected


def _mark_significance(
    table: PaperTable, cells: list[Cell], values: dict[tuple[str, str, str], list[float]]
) -> tuple[list[Cell], dict[tuple[str, str], str]]:
    """Test each proposed row's cell against our best baseline of its dataset x metric (best mean among the
    rows not in ``table.proposed``); returns the cells with their test and, per (dataset, metric), that row."""
    sign = {m: better_sign(m) for m in {c.metric for c in cells}}
    best: dict[tuple[str, str], Cell] = {}
    for c in cells:
        key = (c.dataset, c.metric)
        if (
            table.proposed
            and c.model not in table.proposed
            and c.status == "ok"
            and c.metric in ORACLE_METRICS
            and (key not in best or sign[c.metric] * c.ours_mean > sign[c.metric] * best[key].ours_mean)
        ):
            best[key] = c
    rule = table.significance
    out = []
    for c in cells:
        base = best.get((c.dataset, c.metric))
        if c.model not in table.proposed or base is None or c.metric not in ORACLE_METRICS:
            out.append(c)
            continue
        p = (
            welch_p_value(values.get((c.model, c.dataset, c.metric), []), values[base.model, c.dataset, c.metric])
            if c.status == "ok"
            else None
        )
        gap = None if p is None else c.ours_mean - base.ours_mean
        significant = (
            p is not None
            and p < rule.p_threshold
            and (c.metric != "auc" or rule.min_auc_diff is None or abs(gap) >= rule.min_auc_diff)
        )
        verdict = ("better" if sign[c.metric] * gap > 0 else "worse") if significant else ""
        out.append(replace(c, best_baseline=base.model, p_value=p, significance=verdict))
    return out, {k: c.name for k, c in best.items()}


def _check_duplicates(runs: pl.DataFrame) -> None:
    per_seed = runs.group_by("model", "config", "paper_dataset", "grid_point", "seed").agg(pl.col("job"))
    dup = per_seed.filter(pl.col("job").list.len() > 1)
    if dup.height:
        model, config, dataset, point, seed, jobs = dup.row(0)
        where = f" at grid point {point}" if point else ""
        raise ValueError(
            f"{config} ({model}) on {dataset}{where} with seed {seed} was run more than once "
            f"({', '.join(jobs)}); pass each run folder once"
        )


def run_scale(collection: Collection, scale: str | None) -> str:
    """The scale to name the report by: ``scale`` if given, else the one the runs recorded; an error when they
    recorded none or several, or another than ``scale``."""
    recorded = sorted(set(collection.runs["scale"].drop_nulls()))
    if scale is None:
        if len(recorded) != 1:
            raise ValueError(
                f"the runs record {'scales ' + ', '.join(recorded) if recorded else 'no scale'} "
                f"(.hydra/hydra.yaml); pass --scale smoke|default|paper"
            )
        return recorded[0]
    if recorded and recorded != [scale]:
        raise ValueError(f"--scale {scale} but the runs were made at scale {', '.join(recorded)}")
    return scale


def build_table(
    table: PaperTable,
    collection: Collection,
    configs_dir: Path,
    scale: str,
    row_configs: dict[str, str] | None = None,
    expected: int | None = None,
    derived_rows: dict[str, dict] | None = None,
) -> ResultTable:
    """Fill ``table`` with the completed runs of ``collection``; rows without runs say why.

    ``row_configs`` maps a row key to the model config that fills it where the two differ (an experiment's
    ``paper_row_configs``, e.g. DynInt Table 1's AutoInt row is ``autoint_plus``). In a sweep table (rows keyed
    by a swept value) a cell pools every run of its row: DynInt Tables 3-4 average DA, DGP and DWP.
    ``derived_rows``: rows filled from another row's runs (``add_derived_rows``)."""
    row_configs = row_configs or {}
    metrics = _table_metrics(table)
    model_configs = Path(configs_dir) / "model"
    if not model_configs.is_dir():
        raise FileNotFoundError(f"{model_configs} does not exist; pass the repository's configs folder")
    runs = add_derived_rows(collection.runs, derived_rows)
    models = [row_id(table, row) for row in table.rows]
    # fill_null: a run without a model name is not in the table, and is listed as such
    in_table = pl.col("model").is_in(models) & pl.col("paper_dataset").is_in(list(table.datasets))
    in_table = in_table.fill_null(False)
    ours = runs.filter(in_table)
    _check_duplicates(ours)
    ours, selected = select_grid_points(ours)
    data = _data_per_dataset(ours, table.datasets)
    # auc and log loss also for a table of other metrics (named in its header), plus the groups the table shows
    scored = [*ORACLE_METRICS, *(ORACLE_OF[m] for m in metrics if ORACLE_OF.get(m) not in (None, *ORACLE_METRICS))]
    oracle = oracles(ours, table.datasets, scored)

    stats = {
        (r["model"], r["paper_dataset"]): r
        for r in ours.group_by("model", "paper_dataset")
        .agg(
            agg
            for m in metrics
            if m not in RELATIVE_METRICS
            for agg in (
                _value(table, m).mean().alias(f"{m}:mean"),
                _value(table, m).std().alias(f"{m}:std"),
                _value(table, m).count().alias(f"{m}:n"),
                _value(table, m).drop_nulls().alias(f"{m}:values"),
            )
        )
        .iter_rows(named=True)
    }
    failed = {(s.model, s.paper_dataset) for s in collection.skipped if s.reason == "failed"}

    by_model = _by_model(table)  # else a sweep: its rows share the models named in the experiment
    cells = []
    for row in table.rows:
        model = row_id(table, row)
        for dataset in table.datasets:
            for metric in metrics:
                s = stats.get((model, dataset), {})
                if metric in RELATIVE_METRICS:
                    s = _relative(metric, s, stats.get((RELATIVE_METRICS[metric][1], dataset), {}))
                n = s.get(f"{metric}:n", 0)
                if n:
                    status = "ok"
                elif by_model and model in not_reproducible():
                    status = "not reproducible"
                elif by_model and not (model_configs / f"{row_configs.get(model, model)}.yaml").exists():
                    status = "not yet implemented"
                elif (model, dataset) in failed:
                    status = "failed"
                elif dataset in PRIVATE_DATASETS:
                    status = "private data"
                elif s.get(f"{metric}:base_missing"):
                    status = f"needs {RELATIVE_METRICS[metric][1]} runs"
                else:
                    status = "not run"
                cells.append(
                    Cell(
                        model,
                        row_name(table, row),
                        dataset,
                        metric,
                        s.get(f"{metric}:mean"),
                        s.get(f"{metric}:std"),
                        n,
                        table.value(row, dataset, metric),
                        status,
                        oracle=(
                            oracle[dataset].mean[ORACLE_OF[metric]] if oracle[dataset] and metric in ORACLE_OF else None
                        ),
                    )
                )
    values = {(m, d, metric): s[f"{metric}:values"] for (m, d), s in stats.items() for metric in metrics
              if metric not in RELATIVE_METRICS}  # fmt: skip
    cells, best = _mark_significance(table, cells, values)
    names = {row_id(table, row): row_name(table, row) for row in table.rows}
    claims = get_claims(table)
    checked = {
        d: tuple(check_claim(c, d, values, names, o, claims_alpha()) for c in claims)
        for d, o in oracle.items()
        if o is not None
    }

    ignored = runs.filter(~in_table).group_by("model", "paper_dataset").len().sort("model", "paper_dataset")
    return ResultTable(
        table=table,
        metrics=metrics,
        cells=tuple(cells),
        data=data,
        scale=scale,
        seeds=tuple(sorted(ours["seed"].drop_nulls().unique().to_list())),
        epochs=(ours["epochs"].min(), ours["epochs"].max()) if ours["epochs"].drop_nulls().len() else None,
        completed=runs.height,
        skipped=collection.skipped,
        expected=expected,
        ignored={f"{m} on {d}": n for m, d, n in ignored.rows()},
        configs=tuple(sorted(ours["config"].drop_nulls().unique().to_list())),
        optimizers={
            opt: tuple(sorted(set(cfgs)))
            for opt, cfgs in ours.drop_nulls("optimizer")
            .group_by("optimizer")
            .agg(pl.col("config"))
            .sort("optimizer")
            .rows()
        },
        selected=selected,
        best=best,
        oracles=oracle,
        planted={d: _planted(ours, d) for d in table.datasets},
        plateaus=plateaus(ours.filter(~pl.col("model").is_in(list(derived_rows or {})))),  # no runs of their own
        claims=checked,
        costs=_costs(ours),
        hardware=_hardware(ours),
        inference_timing=_inference_timing(ours),
        recovery=_recovery(ours, names),
    )


def _relative(metric: str, row: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A ``RELATIVE_METRICS`` cell's stats from the row's and the base row's stats of the metric it is relative
    to: 100 (mean_row - mean_base) / mean_base, no std (a ratio of means over different seeds' runs), n = the
    row's runs; ``:base_missing`` when the row has runs and the base row none."""
    of = RELATIVE_METRICS[metric][0]
    n, n_base = row.get(f"{of}:n", 0), base.get(f"{of}:n", 0)
    if not n or not n_base:
        return {f"{metric}:n": 0, f"{metric}:base_missing": bool(n)}
    mean, mean_base = row[f"{of}:mean"], base[f"{of}:mean"]
    return {f"{metric}:mean": 100.0 * (mean - mean_base) / mean_base, f"{metric}:std": None, f"{metric}:n": n}


COST_METRICS = {  # a paper's cost columns -> how our runs measure them (parameters are a column of the table)
    "cpu_seconds_per_epoch": "seconds per epoch",
    "cpu_time_per_epoch": "seconds per epoch",
}


def _costs(runs: pl.DataFrame) -> dict[tuple[str, str], float | None]:
    """Per (row, dataset): the mean fit time per epoch in seconds (training and its validation passes; the
    collected ``train_min``) over the row's runs."""
    agg = runs.group_by("model", "paper_dataset").agg((pl.col("train_min") * 60).mean().alias("seconds"))
    return {(m, d): s for m, d, s in agg.rows()}


def _hardware(runs: pl.DataFrame) -> str | None:
    # the machine of the first run: a reproduction's jobs run on one machine
    for job in runs["job"].to_list():
        try:
            env = json.loads((Path(job) / "environment.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        return f"{env.get('processor') or env.get('machine')}, {env.get('torch_threads')} torch threads" + (
            f", {env['cuda']}" if env.get("cuda") else ", CPU only"
        )
    return None


def _inference_timing(runs: pl.DataFrame) -> dict[str, int] | None:
    # as _hardware: the first run's, since a reproduction's jobs share the experiment's setting
    for job in runs["job"].to_list():
        try:
            return (yaml.safe_load((Path(job) / "config_resolved.yaml").read_text()) or {}).get("inference_timing")
        except (OSError, yaml.YAMLError):
            continue
    return None


def _cost_section(result: ResultTable, dataset: str) -> list[str]:
    """The paper's CPU seconds per epoch beside ours, where the table has them."""
    t = result.table
    costs = [m for m in t.metrics if m in COST_METRICS]
    if not costs:
        return []
    header = ["Model"] + [title for _ in costs for title in ("s / epoch ours", "paper")]
    rows = []
    for row in t.rows:
        seconds = result.costs.get((row_id(t, row), dataset))
        texts = [row_name(t, row)]
        for m in costs:
            paper = t.value(row, dataset, m)
            texts += ["—" if seconds is None else f"{seconds:.1f}", "—" if paper is None else f"{paper:g}"]
        rows.append([x.replace("|", "\\|") for x in texts])
    where = result.hardware or "no completed runs"
    return [
        "",
        f"Cost: {'; '.join(dict.fromkeys(COST_METRICS[m] for m in costs))}, measured here on {where}; "
        f"the paper's on 12 cores of an Intel Xeon E5-2683 v4 @ 2.10GHz with TensorFlow (seconds depend on "
        f"the machine, the data's size and the batch: compare rows, not machines).",
        "",
        *_md_table(header, rows),
    ]


def _fmt(value: float, decimals: int, sign: bool = False) -> str:
    return f"{value:{'+' if sign else ''}.{decimals}f}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    # padded columns, so the printed markdown also reads well in a terminal; numbers right-aligned
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = "| " + " | ".join("-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)) + " |"
    return [line(header), rule, *(line(r) for r in rows)]


def _decimals(table: PaperTable, dataset: str, metric: str) -> int:
    if table.kind == "complexity":
        return COMPLEXITY_DECIMALS
    counts = metric in METRIC_COLUMNS and METRIC_COLUMNS[metric].startswith("arch/") or metric == "fi_ratio_pct"
    return table.decimals(dataset, metric) or (COUNT_DECIMALS if counts else FALLBACK_DECIMALS)


def _cell_texts(result: ResultTable, cell: Cell, row: dict) -> list[str]:
    dec = _decimals(result.table, cell.dataset, cell.metric)
    if cell.status != "ok":
        ours = f"*{cell.status}*"
    else:
        ours = _fmt(cell.ours_mean, dec)
        if cell.n > 1 and cell.ours_std is not None:  # a RELATIVE_METRICS cell has none
            ours += f" ± {_fmt(cell.ours_std, dec)}"
        ours += f" (n={cell.n})"
        if cell.significance:
            ours += f" {MARKS[cell.significance]}"
    if cell.paper is None:
        paper = "—"
    else:
        bold, starred = result.table.marks(row, cell.dataset, cell.metric)
        paper = _fmt(cell.paper, dec)
        paper = (f"**{paper}**" if bold else paper) + ("\\*" if starred else "")
    diff = "—" if cell.diff is None else _fmt(cell.diff, dec, sign=True)
    if result.oracles[cell.dataset] is None or cell.metric not in ORACLE_OF:  # real data: no oracle column
        return [ours, paper, diff]
    gap = "—" if cell.gap_to_oracle is None else _fmt(cell.gap_to_oracle, dec, sign=True)
    return [ours, paper, diff, gap]


def _oracle_row(result: ResultTable, dataset: str, oracle: Oracle) -> list[str]:
    texts = [ORACLE_ROW if oracle.agree else f"{ORACLE_ROW}, mean: runs disagree"]
    for metric in result.metrics:
        if metric not in ORACLE_OF:
            texts += ["—", "—", "—"]
            continue
        dec = _decimals(result.table, dataset, metric)
        texts += [_fmt(oracle.mean[ORACLE_OF[metric]], dec), "—", "—", "—"]
    return texts


def _significance_note(result: ResultTable) -> str:
    t = result.table
    if not t.proposed:
        return "not tested: this table has no rows of the paper's own models to test against baselines."
    names = ", ".join(r["name"] for r in t.rows if row_id(t, r) in t.proposed)
    rule = t.significance
    auc = f" and an AUC gap of at least {rule.min_auc_diff:g}" if rule.min_auc_diff is not None else ""
    note = (
        f"{MARKS['better']} / {MARKS['worse']} after our value = the paper's own model ({names}) is "
        f"significantly better / worse than our best baseline (the best of the other rows in our runs, per "
        f"dataset and metric, named under each table): two-tailed Welch t-test (unequal variances) over "
        f"seeds, p < {rule.p_threshold:g}{auc}. Threshold: {rule.source}. The paper's own bold and \\* "
        f"stay on its values."
    )
    if all(c.n < 2 for c in result.cells):
        return f"no test made: fewer than 2 seeds per cell (a t-test needs n >= 2). When there are: {note}"
    return note + " Cells with fewer than 2 seeds on either side are not tested."


def _total_jobs(result: ResultTable) -> int:
    # the reproduction's jobs when known (the ones never started included), else every job folder read
    return result.expected if result.expected is not None else result.completed + len(result.skipped)


def _header(result: ResultTable) -> list[str]:
    t = result.table
    if result.epochs is None:
        budget = f"scale `{result.scale}`; no completed runs yet"
    else:
        lo, hi = result.epochs
        epochs = f"{lo} epoch{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} epochs"
        seeds = ", ".join(map(str, result.seeds))
        budget = f"scale `{result.scale}`; {epochs} per run; seeds {seeds}; metrics on the {SPLIT} split"
    lines = [f"# {t.paper} {t.key} ({t.label}): paper vs reproduced", "", f"*{t.caption}* — {t.title}", ""]
    total = _total_jobs(result)
    if total > result.completed:
        lines += [
            f"**Partial**: {total - result.completed} of {total} jobs did not complete (failed or missing, "
            f"counted at the end); their cells are missing or rest on fewer seeds.",
            "",
        ]
    lines += [f"- **Budget**: {budget}.", "- **Data per paper column**:"]
    for dataset, used in result.data.items():
        desc = "no runs" if used is None else f"{used[1]} (`data={used[0]}`)"
        if result.planted[dataset]:
            desc += f"; planted mechanism `{result.planted[dataset]}`"
        oracle = result.oracles[dataset]
        if oracle is not None:
            desc += "; oracle " + ", ".join(f"{metric_name(m)} {v:.6g}" for m, v in oracle.mean.items())
            if not oracle.agree:
                desc += f" — {oracle.disagreement()}"
        elif result.planted[dataset]:  # a stand-in scored on a group of its test split (DPN Table 3)
            desc += "; no oracle (the stand-in's is for its whole test split)"
        elif used is not None:
            desc += "; no oracle (real data: its true click probability is unknown)"
        lines.append(f"  - {dataset_name(dataset)} column: {desc}")
    if any(o is not None for o in result.oracles.values()):
        lines.append(
            f"- **Oracle**: on a synthetic stand-in, the row `{ORACLE_ROW}` scores the data's true click "
            f"probability on the same {SPLIT} split: what a perfect model would score, the ceiling that "
            f"the data's noise leaves. `− oracle` columns = ours − oracle (AUC: how far below it; "
            f"LogLoss: how far above it). Real-data columns have no oracle."
        )
    lines += _recovery_lines(result)
    if t.kind == "complexity":
        lines.append(_timing_line(result))
    if result.optimizers:
        lines.append(
            "- **Optimizers**: "
            + "; ".join(f"`{opt}` for {', '.join(cfgs)}" for opt, cfgs in result.optimizers.items())
        )
    lines.append(f"- **Significance**: {_significance_note(result)}")
    unreproducible = {c.model: c.name for c in result.cells if c.status == "not reproducible"}
    lines += [f"- **Not reproducible**: {name}: {not_reproducible()[model]}." for model, name in unreproducible.items()]
    lines += [
        f"- **Note**: {HONESTY_NOTE}",
        "",
        "ours = mean ± sample std over seeds (n = number of seeds; std only for n > 1); paper = as "
        "printed (bold and \\* as in the paper); Δ = ours − paper (AUC: higher is better, LogLoss: "
        "lower is better).",
    ]
    if result.selected:
        lines += [
            "",
            f"Hyper-parameter grid (configs/grid/): each cell reports the point with the best mean "
            f"`{SELECT_ON}` over seeds, chosen on validation, never on test:",
        ]
        lines += [f"- {k}: {v}" for k, v in result.selected.items()]
    if not _by_model(t):
        lines += [
            "",
            f"Rows are values of `{t.row_key[0]}`; each cell pools the runs of "
            f"{', '.join(f'`{c}`' for c in result.configs) or 'no model yet'} over seeds (n counts runs).",
        ]
    return lines


def _timing_line(result: ResultTable) -> str:
    """A complexity table's header line: what its times measure, and the two machines."""
    per_epoch = "minutes per epoch of fitting (training and its validation pass, over this data's whole train split)"
    parts = []
    if "train_min" in result.metrics:
        parts.append(f"train = {per_epoch}; a chain's row: its re-train stage, as the paper counts")
    if any(METRIC_COLUMNS.get(m, "").startswith("stage_min/") for m in result.metrics):
        parts.append(f"each stage = {per_epoch}, summed over a chain's stages of that kind (AIM(3rd): the order-2 "
                     "and order-3 interaction searches)")  # fmt: skip
    timing = result.inference_timing
    if "inference_s" in result.metrics:
        parts.append(
            f"inference = seconds to score {timing['samples']:,} test rows (the split cycled when shorter) in batches "
            f"of {timing['batch_size']:,} on the device the run trained on, best of 2, after fitting "
            "(`ctrlab.lit.timing`)"
            if timing
            else "no inference timed (the runs set no `inference_timing`)"
        )
    paper = PAPER_HARDWARE.get(result.table.paper, "its own machine")
    return (
        f"- **Timing**: {'; '.join(parts)}. Measured here on {result.hardware or 'no completed runs'}; the paper's "
        f"on {paper}. Times depend on the machine and the data's size: compare rows, not machines."
    )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def _recovery_lines(result: ResultTable) -> list[str]:
    """The header's planted-truth recovery: OptInter's kinds on ``memorize``, AIM's FIS / IFS / EDS on ``functions``."""
    kinds = {k: v for k, v in result.recovery.items() if any(v[0][x] is not None for x in RECOVERY_KEYS[:3])}
    aim = {k: v for k, v in result.recovery.items() if k not in kinds}
    lines = []
    if kinds:
        lines.append(
            "- **Planted-truth recovery of the searched architectures** (`ctrlab.search.recovery`; share of the "
            "stand-in's planted memorized pairs memorized / factorized pairs factorized / no-effect pairs naive, "
            "mean over n searches): "
            + "; ".join(
                f"{name} on {dataset_name(d)}: " + " / ".join(_pct(s[k]) for k in RECOVERY_KEYS[:3]) + f" (n={n})"
                for (name, d), (s, n) in kinds.items()
            )
        )
    if aim:
        lines.append(
            "- **Planted-truth recovery of the searched architectures** (`ctrlab.search.recovery`, the `functions` "
            "stand-in; mean over n searches): FIS = share of the planted pairs kept / of the other pairs dropped; "
            "IFS = share of the kept planted pairs whose largest |α'| is their planted function (inner -> inner, "
            "weighted -> vector kernel; the stand-in's full-kernel pairs have no AIM counterpart); EDS = Spearman "
            "correlation of the kept embedding size per field with its planted useful size (d_f in a planted pair, "
            "else 0): "
            + "; ".join(
                f"{name} on {dataset_name(d)}: FIS {_pct(s['fis_kept'])} / {_pct(s['fis_dropped'])}"
                + (f", IFS {_pct(s['ifs'])}" if s["ifs"] is not None else "")
                + (f", EDS {s['eds']:+.2f}" if s["eds"] is not None else "")
                + f" (n={n})"
                for (name, d), (s, n) in aim.items()
            )
        )
    return lines


def _footer(result: ResultTable) -> list[str]:
    failed = [s for s in result.skipped if s.reason == "failed"]
    missing = [s for s in result.skipped if s.reason == "missing"]
    lines = [
        "---",
        "",
        f"Jobs read: {result.completed} completed, {len(failed)} failed, {len(missing)} missing (no metrics.json).",
    ]
    never = _total_jobs(result) - result.completed - len(failed) - len(missing)
    if never:
        lines.append(f"Jobs never started: {never} of the reproduction's {result.expected}.")
    for s in failed:
        detail = s.detail.splitlines()[0][:200] if s.detail else ""
        lines.append(f"- failed: `{s.job}` ({s.model} on {s.paper_dataset}): {detail}")
    for s in missing:
        lines.append(f"- missing: `{s.job}`" + (f" (overrides: {s.detail})" if s.detail else ""))
    if result.ignored:
        lines.append(
            "Runs not in this table (ignored): " + ", ".join(f"{k} ({n})" for k, n in result.ignored.items()) + "."
        )
    return lines


def render_markdown(result: ResultTable) -> str:
    """The table as markdown: header (budget, data, honesty note), one section per dataset, footer."""
    lines = _header(result)
    cells = {(c.model, c.dataset, c.metric): c for c in result.cells}
    for dataset in result.table.datasets:
        oracle = result.oracles[dataset]
        rows = []
        for row in result.table.rows:
            texts = [row_name(result.table, row)]
            for metric in result.metrics:
                texts += _cell_texts(result, cells[row_id(result.table, row), dataset, metric], row)
            rows.append(texts)
        if oracle is not None and set(result.metrics) & set(ORACLE_OF):
            rows.append(_oracle_row(result, dataset, oracle))
        header = ["Model"]
        for metric in result.metrics:
            name = column_name(result.table, metric)
            header += [f"{name} ours", f"{name} paper", f"Δ {name}"]
            header += [f"{name} − oracle"] if oracle is not None and metric in ORACLE_OF else []
        rows = [[t.replace("|", "\\|") for t in texts] for texts in rows]
        lines += ["", f"## {dataset_name(dataset)}", "", *_md_table(header, rows)]
        best = [
            f"{column_name(result.table, m)} {result.best[dataset, m]}"
            for m in result.metrics
            if (dataset, m) in result.best
        ]
        if best:
            lines += ["", f"Best baseline (ours): {'; '.join(best)}."]
        lines += _cost_section(result, dataset) + _plateau_section(result, dataset) + _claims_section(result, dataset)
    return "\n".join([*lines, "", *_footer(result)]) + "\n"


def _plateau_section(result: ResultTable, dataset: str) -> list[str]:
    """One line per row with runs: did its monitor plateau before the budget ended?"""
    checks = [
        (row_name(result.table, row), result.plateaus[key])
        for row in result.table.rows
        if (key := (row_id(result.table, row), dataset)) in result.plateaus
    ]
    if not checks:
        return []
    lines = [
        "",
        "Plateau check (epochs run, min–max over the row's runs, of max_epochs; runs in which early "
        "stopping fired; the selected checkpoint's epoch and the monitor that chose it):",
        "",
    ]
    lines += [f"- {plateau_line(name, p)}" for name, p in checks]
    unconverged = sum(p.maybe_unconverged for _, p in checks)
    if unconverged:
        lines += [
            "",
            f"{unconverged} of {len(checks)} rows never stopped early: possibly not converged, their "
            f"numbers are those of the budget, not of the model.",
        ]
    return lines


def _claims_section(result: ResultTable, dataset: str) -> list[str]:
    """The table's planted-truth claims decided on this column; on real data, why there are none."""
    claims = get_claims(result.table)
    if not claims or result.data[dataset] is None:
        return []
    if dataset not in result.claims:
        return [
            "",
            f"Planted-truth checks: none — the claims ({'; '.join(c.text for c in claims)}) are about a "
            f"synthetic stand-in's planted truth, and this column is real data, with no oracle.",
        ]
    lines = [
        "",
        f"Planted-truth checks on this stand-in ({SPLIT} split; a side of several rows pools all their "
        f"runs; two-tailed Welch t-test over runs, significant at p < {claims_alpha():g}; `A < B`: yes "
        f"when B is significantly better, `A <= B`: yes unless B is significantly worse; the best row "
        f"is the best mean):",
        "",
    ]
    return lines + [f"- {r.line()}" for r in result.claims[dataset]]


def render_csv(result: ResultTable) -> str:
    """One line per model x dataset x metric, unrounded."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in result.cells:
        used = result.data[c.dataset]
        writer.writerow(
            [
                c.model,
                c.name,
                c.dataset,
                c.metric,
                c.ours_mean,
                c.ours_std,
                c.n,
                c.paper,
                c.diff,
                c.oracle,
                c.gap_to_oracle,
                c.status,
                c.best_baseline,
                c.p_value,
                c.significance,
                used[1] if used else None,
            ]
        )
    return buf.getvalue()


def write_table(
    paper: str,
    table: str,
    run_dirs: list[Path],
    out_dir: Path,
    configs_dir: Path,
    scale: str | None = None,
    row_configs: dict[str, str] | None = None,
    expected: int | None = None,
    derived_rows: dict[str, dict] | None = None,
) -> Path:
    """Write ``<out_dir>/<table>.<scale>.md`` and ``.csv`` for a paper table from run folders (or job folders);
    return the .md path. ``scale``: default, the one the runs recorded; ``expected``: the reproduction's
    number of jobs, when known."""
    collection = collect(run_dirs)
    scale = run_scale(collection, scale)
    result = build_table(get_table(paper, table), collection, configs_dir, scale, row_configs, expected, derived_rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{table}.{scale}.md"
    write_text_atomic(md.with_suffix(".csv"), render_csv(result))
    write_text_atomic(md, render_markdown(result))
    return md
