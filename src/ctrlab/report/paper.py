"""The papers' printed tables (``ctrlab/resources/paper_tables.yaml``): rows, decimals and display names."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import yaml

METRIC_NAMES = {"auc": "AUC", "logloss": "LogLoss", "params": "Params", "memorize": "Memorize",
                "factorize": "Factorize", "naive": "Naïve", "fi_ratio_pct": "FI ratio (%)",
                # AIM Tables 7-9, as printed
                "train_min": "train (min)", "inference_s": "inference (s)",
                "search_interaction_if_min": "search interaction-IF (min)", "search_embed_min": "search embed (min)",
                "retrain_min": "re-train (min)",
                "rel_impr_pct": "Rel. Impr (%)"}  # fmt: skip


@functools.cache
def load_papers() -> dict[str, Any]:
    """All four papers, as ``{paper: {title, tables: {key: spec}}}``."""
    text = (files("ctrlab") / "resources" / "paper_tables.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@dataclass(frozen=True)
class Significance:
    """When our report calls a proposed model's cell significantly different from the best baseline:
    p below ``p_threshold`` and, if set, an AUC difference of at least ``min_auc_diff``; ``source`` says
    what the paper states."""

    p_threshold: float
    min_auc_diff: float | None
    source: str


@dataclass(frozen=True)
class PaperTable:
    """One printed table; every row stores its values as ``row[dataset][metric]``."""

    paper: str
    key: str
    title: str
    label: str
    caption: str
    kind: str
    datasets: tuple[str, ...]
    metrics: tuple[str, ...]
    decimals_spec: dict[str, int]
    row_key: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    proposed: tuple[str, ...]  # the paper's own models (row keys); the other rows are its baselines
    significance: Significance
    printed_columns: dict[str, str]  # a metric -> the column title the paper prints (DPN Table 5: auc_new -> New)

    def decimals(self, dataset: str, metric: str) -> int | None:
        """Decimals the paper prints for this cell: a ``dataset.metric`` key overrides ``metric``."""
        return self.decimals_spec.get(f"{dataset}.{metric}", self.decimals_spec.get(metric))

    def value(self, row: dict[str, Any], dataset: str, metric: str) -> float | None:
        """The printed value, or None where the paper prints none (e.g. 'Out of Memory')."""
        return (row.get(dataset) or {}).get(metric)

    def marks(self, row: dict[str, Any], dataset: str, metric: str) -> tuple[bool, bool]:
        """Whether the paper prints this cell in bold, and whether with a significance '*'."""
        cell = f"{dataset}.{metric}"
        return cell in row.get("bold", ()), cell in row.get("starred", ())


def get_table(paper: str, table: str) -> PaperTable:
    """Look a table up by paper key (``dynint``) and table key (``table1``)."""
    papers = load_papers()
    if paper not in papers:
        raise KeyError(f"unknown paper {paper!r}; known: {', '.join(papers)}")
    tables = papers[paper]["tables"]
    if table not in tables:
        raise KeyError(f"{paper} has no table {table!r}; known: {', '.join(tables)}")
    spec = tables[table]
    return PaperTable(
        paper=paper,
        key=table,
        title=papers[paper]["title"],
        label=spec["label"],
        caption=spec["caption"],
        kind=spec["kind"],
        datasets=tuple(spec.get("datasets", ())),
        metrics=tuple(spec.get("metrics", ())),
        decimals_spec=dict(spec.get("decimals", {})),
        row_key=tuple(spec["row_key"]),
        rows=tuple(spec["rows"]),
        proposed=tuple(spec.get("proposed", ())),
        printed_columns=dict(spec.get("printed_columns", {})),
        significance=Significance(**papers[paper]["significance"]),
    )


@functools.cache
def not_reproducible() -> dict[str, str]:
    """Row key -> why that row cannot be reproduced faithfully (``ctrlab/resources/not_reproducible.yaml``)."""
    text = (files("ctrlab") / "resources" / "not_reproducible.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@functools.cache
def _dataset_names() -> dict[str, str]:
    # the papers' dataset-statistics tables print each data set's name
    names: dict[str, str] = {}
    for paper in load_papers().values():
        for spec in paper["tables"].values():
            if spec["kind"] == "dataset_stats":
                for row in spec["rows"]:
                    names.setdefault(row["dataset"], row["name"])
    return names


def dataset_name(dataset: str) -> str:
    """Display name of a dataset key, as a paper prints it (``ipinyou`` -> ``iPinYou``)."""
    return _dataset_names().get(dataset, dataset.replace("_", " ").title())


def metric_name(metric: str) -> str:
    """Display name of a metric key (``logloss`` -> ``LogLoss``)."""
    return METRIC_NAMES.get(metric, metric)
