"""Read training runs (``metrics.json`` of single runs or Hydra multirun jobs) into one tidy frame."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from ctrlab.search.artifact import Artifact, read_artifact
from ctrlab.search.recovery import INTERACTION_SPACES, PAIR

METRICS_FILE = "metrics.json"
# ctrlab.search.recovery's scores: OptInter's planted kinds, then AIM's FIS (kept / dropped), IFS and EDS
RECOVERY_KEYS = ("memorized", "factorized", "none", "fis_kept", "fis_dropped", "ifs", "eds")
# AIM Table 9's columns -> the name prefix of the chain stages they sum (configs/search/aim*.yaml: interaction,
# interaction3, ..., embed, retrain)
STAGE_KINDS = {"search_interaction_if": "interaction", "search_embed": "embed", "retrain": "retrain"}

# one column per field a completed run writes (see ctrlab.train); a missing field is null
SCHEMA: dict[str, type[pl.DataType]] = {
    "job": pl.String,
    "model": pl.String,  # the paper row the run fills (its paper_row, else its model config)
    "config": pl.String,  # the model config it ran
    "data": pl.String,
    "optimizer": pl.String,
    "grid_point": pl.String,  # a hyper-parameter grid's point (configs/grid/), null outside a grid
    "paper_dataset": pl.String,
    "data_description": pl.String,
    "seed": pl.Int64,
    "epochs": pl.Int64,
    "global_step": pl.Int64,
    "params": pl.Int64,
    "dense_params": pl.Int64,  # without the embedding tables: what the papers count
    "train_time_s": pl.Float64,
    "samples_per_s": pl.Float64,
    "val/auc": pl.Float64,
    "val/logloss": pl.Float64,
    "test/auc": pl.Float64,
    "test/logloss": pl.Float64,
    "test/auc_new": pl.Float64,  # KFAtt's test groups of behaviour data (lit/behaviour_groups.py); null elsewhere
    "test/auc_infreq": pl.Float64,
    # the true click probability's metrics on a synthetic stand-in's test / valid split; null on real data
    "oracle/auc": pl.Float64,
    "oracle/logloss": pl.Float64,
    "oracle_valid/auc": pl.Float64,
    "oracle_valid/logloss": pl.Float64,
    "oracle/auc_new": pl.Float64,  # the sequence stand-in's test groups (data/synthetic_sequence.py)
    "oracle/auc_infreq": pl.Float64,
    "planted_mechanism": pl.String,  # the stand-in's planted mechanism (e.g. "interactions"); null on real data
    "monitor": pl.String,  # what early stopping and the best checkpoint watched, e.g. "val/auc"
    "best_epoch": pl.Int64,  # the epoch of the selected (best) checkpoint
    "stopped_early": pl.Boolean,  # early stopping fired before max_epochs
    "max_epochs": pl.Int64,
    # a searched architecture (a stage job's `searched_architecture`, else the re-trained one's `architecture`):
    # how many field pairs took each OptInter method (OptInter Table VI); null for a model without one
    "arch/memorize": pl.Int64,
    "arch/factorize": pl.Int64,
    "arch/naive": pl.Int64,
    # the search model with the derived architecture fixed on its own weights (OptInter Table IX, "w.o.")
    "without_retrain/test/auc": pl.Float64,
    "without_retrain/test/logloss": pl.Float64,
    # on a stand-in with planted kinds per pair: the share of each kind the searched architecture recovered;
    # on AIM's `functions` stand-in: FIS (planted pairs kept, others dropped), IFS (share), EDS (Spearman)
    **{f"recovery/{k}": pl.Float64 for k in RECOVERY_KEYS},
    # AIM Table 3's FI ratio: the searched architecture's kept interactions of its highest order, % of C(n, p)
    "fi_ratio_pct": pl.Float64,
    # AIM Tables 7-9: minutes per epoch (train_time_s / epochs / 60) of the run (a chain: its last stage), summed
    # per kind of stage over a chain's stages, and the seconds to score inference_timing's rows (ctrlab.lit.timing)
    "train_min": pl.Float64,
    **{f"stage_min/{kind}": pl.Float64 for kind in STAGE_KINDS},
    "inference_s": pl.Float64,
    "scale": pl.String,  # not in metrics.json: the `scale` choice Hydra recorded (.hydra/hydra.yaml); null if none
}


@dataclass(frozen=True)
class SkippedJob:
    """A job that gave no result: ``failed`` (status != completed) or ``missing`` (no metrics.json)."""

    job: Path
    reason: str
    model: str | None = None
    paper_dataset: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Collection:
    """Completed runs, one row each (columns: ``SCHEMA``), and the jobs that were skipped."""

    runs: pl.DataFrame
    skipped: tuple[SkippedJob, ...]


def job_dirs(run_dir: Path) -> list[Path]:
    """The job folders of a run folder: itself for a single run, the numbered subfolders of a multirun."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    # a single run has metrics.json or, if it died early, Hydra's .hydra folder
    if (run_dir / METRICS_FILE).exists() or (run_dir / ".hydra").is_dir():
        return [run_dir]
    jobs = [p for p in run_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not jobs and not (run_dir / "multirun.yaml").exists():
        raise ValueError(f"{run_dir} is neither a run folder ({METRICS_FILE}) nor a Hydra multirun folder")
    return sorted(jobs, key=lambda p: int(p.name))


def _overrides(job: Path) -> str:
    # what a job was asked to run, for jobs that died before writing metrics.json
    path = job / ".hydra" / "overrides.yaml"
    try:
        return " ".join(yaml.safe_load(path.read_text()) or [])
    except (OSError, yaml.YAMLError):
        return ""


def _scale(job: Path) -> str | None:
    # the budget (configs/scale/) the job ran with, as Hydra recorded the config choices
    try:
        hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return ((hydra_cfg or {}).get("hydra", {}).get("runtime", {}).get("choices") or {}).get("scale")


def _nested(metrics: dict, keys: tuple[str, ...]) -> dict[str, float | None]:
    # {"oracle": {"auc": a}} -> {"oracle/auc": a} for every such column of SCHEMA; an absent block gives nulls
    return {
        column: (metrics.get(key) or {}).get(column.split("/", 1)[1])
        for key in keys
        for column in SCHEMA
        if column.startswith(f"{key}/")
    }


# a search space's options as OptInter's methods: AutoFIS keeps a pair as a gated inner product (factorized) or
# drops it (naive); OptInter's own space names them directly
METHOD_OF_OPTION = {"memorize": "memorize", "factorize": "factorize", "naive": "naive", "keep": "factorize",
                    "drop": "naive"}  # fmt: skip


def _architecture(metrics: dict) -> dict[str, int | None]:
    """``arch/<method>`` counts of the run's searched (else trained) architecture; nulls without one."""
    arch = metrics.get("searched_architecture") or metrics.get("architecture") or {}
    spaces = [c for c in (arch.get("counts") or {}).values() if set(c) <= set(METHOD_OF_OPTION)]
    counts = {f"arch/{m}": (0 if spaces else None) for m in ("memorize", "factorize", "naive")}
    for space in spaces:
        for option, n in space.items():
            counts[f"arch/{METHOD_OF_OPTION[option]}"] += n
    return counts


def _recovery(metrics: dict) -> dict[str, float | None]:
    found = metrics.get("recovery") or {}
    return {f"recovery/{k}": (found.get(k) or {}).get("spearman" if k == "eds" else "share") for k in RECOVERY_KEYS}


def fi_ratio_pct(artifact: Artifact) -> float | None:
    """AIM Table 3's FI ratio: of the C(n, p) interactions of the artifact's highest order p (n fields), the
    percentage kept (an AIM unit with any function, an AutoFIS unit marked ``keep``); None without an interaction
    space. p is the search's ``model.max_order`` when the provenance has it: an order whose pool was empty (the
    order below kept nothing) has no units in the artifact, and its ratio is 0, not the order below's."""
    space = next((s for s in artifact.spaces if s.name in INTERACTION_SPACES), None)
    fields = artifact.provenance.data.get("fields") or []
    if space is None or not space.units or not fields:
        return None
    configured = ((artifact.provenance.config or {}).get("model") or {}).get("max_order")
    order = configured or max(u.count(PAIR) for u in space.units) + 1
    keep = INTERACTION_SPACES[space.name]
    kept = sum(u.count(PAIR) + 1 == order and (d == keep if keep else bool(d))
               for u, d in zip(space.units, space.decisions, strict=True))  # fmt: skip
    return 100.0 * kept / math.comb(len(fields), order)


def _fi_ratio(metrics: dict) -> float | None:
    # the searched architecture's file, as the stage job (or the search run) recorded it
    path = (metrics.get("searched_architecture") or metrics.get("architecture") or {}).get("path")
    return fi_ratio_pct(read_artifact(path)) if path and Path(path).is_file() else None


def _minutes_per_epoch(metrics: dict) -> float | None:
    # fit time (training and its validation passes, as the other cost columns) per epoch, in minutes
    seconds, epochs = metrics.get("train_time_s"), metrics.get("epochs")
    return seconds / max(epochs, 1) / 60 if seconds is not None and epochs is not None else None


def _stage_minutes(metrics: dict) -> dict[str, float | None]:
    """Per Table 9 column, the minutes per epoch of a chain's stages of that kind, summed (an AIM(3rd) chain
    searches order 2, then order 3: one epoch of each); nulls outside a chain or without such a stage."""
    out: dict[str, float | None] = {f"stage_min/{k}": None for k in STAGE_KINDS}
    for stage in metrics.get("stages") or []:
        kind = next((k for k, prefix in STAGE_KINDS.items() if stage["name"].startswith(prefix)), None)
        path = Path(stage["folder"]) / METRICS_FILE
        if kind is None or not path.is_file():
            continue
        minutes = _minutes_per_epoch(json.loads(path.read_text()))
        if minutes is not None:
            out[f"stage_min/{kind}"] = (out[f"stage_min/{kind}"] or 0.0) + minutes
    return out


def collect(run_dirs: Iterable[Path]) -> Collection:
    """Read every job of every run folder; completed runs become rows, the others are counted."""
    rows: list[dict] = []
    skipped: list[SkippedJob] = []
    for run_dir in run_dirs:
        for job in job_dirs(Path(run_dir)):
            path = job / METRICS_FILE
            if not path.exists():
                skipped.append(SkippedJob(job, "missing", detail=_overrides(job)))
                continue
            try:
                metrics = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                skipped.append(SkippedJob(job, "missing", detail=f"unreadable {METRICS_FILE}: {err}"))
                continue
            if metrics.get("status") != "completed":
                row = metrics.get("paper_row") or metrics.get("model")
                error = str(metrics.get("error") or f"status {metrics.get('status')}")
                skipped.append(SkippedJob(job, "failed", row, metrics.get("paper_dataset"), error))
                continue
            # a run fills the paper row its experiment names (autoint_plus -> autoint; a sweep value), else its model's
            row = metrics.get("paper_row") or metrics.get("model")
            rows.append(
                {k: metrics.get(k) for k in SCHEMA}
                | _nested(metrics, ("oracle", "oracle_valid"))
                | _architecture(metrics)
                | _recovery(metrics)
                | {"fi_ratio_pct": _fi_ratio(metrics), "train_min": _minutes_per_epoch(metrics)}
                | _stage_minutes(metrics)
                | {"model": row, "config": metrics.get("model"), "job": str(job), "scale": _scale(job)}
            )
    return Collection(pl.DataFrame(rows, schema=SCHEMA), tuple(skipped))
