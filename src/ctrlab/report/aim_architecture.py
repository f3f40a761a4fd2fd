"""AIM Table 6 and Figures 7-8: what AIM's searches kept, read from their architecture artifacts beside the data
they were searched on (the artifact's provenance locates its cache folder: ``architecture_figures.cache_folder``).

- Table 6 (``write_table6``, the embed stage's artifacts): per field, its vocabulary (distinct values kept by the
  data recipe: ``vocab_size`` minus the padding and OOV ids) and the embedding size EDS kept (the field's kept
  dimensions, eq. 17), mean over the searches; Spearman's rank correlation of the two per search. On the
  ``functions`` stand-in also the planted useful size d_f of each field (``feature_map.extra["planted"]
  ["field_dims"]``), whether the field is in a planted pair, and the EDS recovery score (Spearman of kept size vs
  d_f, 0 for a field in no pair: ``ctrlab.search.recovery``). The paper's 24 Avazu rows are printed beneath.
- Figure 7 (``write_figure7``, the order-2 interaction search's artifacts): per (pair, function) slot its α' (the
  artifact's raw weights) against the pair's statistics_AUC (``report/statistics_auc.py``, train CTR of the value
  pair scored on test).
- Figure 8 (``write_figure8``, the highest-order interaction search's artifacts, orders 2-4): left, the number of
  kept slots of each function per order; right, statistics_AUC of each 2nd-order pair against the number of
  functions kept for it.

Each writes ``<key>.<scale>.png``, ``.csv`` (the plotted numbers; Figure 8 a second ``_statistics_auc.csv``) and
``.md`` (what was read, the paper's claim; the paper prints no numbers for the figures: ours only).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed
from scipy.stats import spearmanr

from ctrlab.data import cache
from ctrlab.data.schema import FeatureMap
from ctrlab.models.aim import DIM_SPACE, SPACE
from ctrlab.report.architecture_figures import cache_folder, save_png
from ctrlab.report.figures import figure_head
from ctrlab.report.paper import dataset_name, get_table
from ctrlab.report.statistics_auc import statistics_auc
from ctrlab.report.tables import HONESTY_NOTE
from ctrlab.search.artifact import Artifact, SpaceRecord, load_decisions, read_artifact
from ctrlab.search.recovery import PAIR, function_recovery
from ctrlab.utils import write_text_atomic

RESERVED_IDS = 2  # the padding id 0 and the OOV id of every field (data/schema.py): not values of the field
COLORS = {"inner": "tab:blue", "outer": "tab:orange", "vector_kernel": "tab:green", "scalar_kernel": "tab:red"}


@dataclass
class _Searched:
    """One artifact with the data it was searched on."""

    path: Path
    artifact: Artifact
    folder: Path  # its cache folder
    feature_map: FeatureMap

    def space(self, name: str) -> SpaceRecord:
        found = next((s for s in self.artifact.spaces if s.name == name), None)
        if found is None:
            raise ValueError(
                f"architecture artifact {self.path} has no {name!r} space (it has "
                f"{[s.name for s in self.artifact.spaces]}): it is not the artifact of the AIM stage this report reads"
            )
        return found


def _load(paths: list[Path]) -> list[_Searched]:
    """Every artifact read and checked against its data's fields before any is scored."""
    if not paths:
        raise ValueError("no job wrote an architecture artifact; nothing to report")
    out = []
    for path in map(Path, paths):
        artifact = read_artifact(path)
        folder = cache_folder(path, artifact)
        fm = FeatureMap.load(folder / "feature_map.json")
        load_decisions(path, fm)  # refuses an artifact of other fields than the cache's
        out.append(_Searched(path, artifact, folder, fm))
    return out


def _seed(s: _Searched) -> int | None:
    return s.artifact.provenance.seed


def _rho(a: list[float], b: list[float]) -> float | None:
    # Spearman's rank correlation; None when either side is constant (undefined)
    return float(spearmanr(a, b).statistic) if len(set(a)) > 1 and len(set(b)) > 1 else None


def _fmt(v: float | None, spec: str = "+.2f") -> str:
    return "—" if v is None else f"{v:{spec}}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


# --- Table 6 ----------------------------------------------------------------------------------------------------


def embedding_sizes(searched: list[_Searched]) -> pl.DataFrame:
    """One row per (search, field): dataset, seed, field, vocabulary, kept (EDS's kept dimensions), planted_dim
    and in_planted_pair (the ``functions`` stand-in's truth; null on other data)."""
    rows = []
    for s in searched:
        kept = s.space(DIM_SPACE).decisions  # [F] lists of kept dimension indices
        planted = s.feature_map.extra.get("planted") or {}
        dims = planted.get("field_dims")
        in_pairs = {f for pair in planted.get("pairs") or [] for f in pair}
        for f, (field, decision) in enumerate(zip(s.feature_map.fields, kept, strict=True)):
            rows.append({"dataset": s.feature_map.dataset, "seed": _seed(s), "field": field.name,
                         "vocabulary": field.vocab_size - RESERVED_IDS, "kept": len(decision),
                         "planted_dim": dims[f] if dims else None,
                         "in_planted_pair": f in in_pairs if dims else None})  # fmt: skip
    schema = {"dataset": pl.String, "seed": pl.Int64, "field": pl.String, "vocabulary": pl.Int64, "kept": pl.Int64,
              "planted_dim": pl.Int64, "in_planted_pair": pl.Boolean}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def write_table6(spec: dict[str, Any], artifacts: list[Path], out_dir: Path, scale: str) -> Path:
    """AIM Table 6 from the embed stage's artifacts (module docstring): ``<out_dir>/table6.<scale>.md`` and
    ``.csv`` (``embedding_sizes``, one row per search and field). Returns the .md path."""
    searched = _load(artifacts)
    sizes = embedding_sizes(searched)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{spec['key']}.{scale}"
    write_text_atomic(out_dir / f"{stem}.csv", sizes.write_csv())
    paper = get_table(spec["paper"], spec["key"])
    lines = [f"# {paper.paper} {paper.key} ({paper.label}): paper vs reproduced", "", f"*{paper.caption}*", "",
             f"- **Searches**: {len(searched)} (scale `{scale}`; seeds "
             f"{', '.join(str(_seed(s)) for s in searched)}); artifacts: "
             + ", ".join(f"`{s.path}`" for s in searched),
             f"- **Vocabulary** = the field's distinct values after the data recipe (its ids minus padding and OOV); "
             f"**kept** = the dimensions EDS kept (β != 0, eq. 17) of d = "
             f"{len(searched[0].space(DIM_SPACE).options)}, mean over the searches.",
             f"- **Note**: {HONESTY_NOTE}"]  # fmt: skip
    for dataset in sizes["dataset"].unique(maintain_order=True).to_list():
        here = [s for s in searched if s.feature_map.dataset == dataset]
        part = sizes.filter(pl.col("dataset") == dataset)
        per_field = (part.group_by("field", maintain_order=True)
                     .agg(pl.col("vocabulary").first(), pl.col("kept").mean(), pl.col("planted_dim").first(),
                          pl.col("in_planted_pair").first())
                     .sort("vocabulary", "field"))  # fmt: skip
        planted = per_field["planted_dim"].null_count() == 0
        header = ["field", "vocabulary", "kept (ours)", *(["planted d_f", "in a planted pair"] if planted else [])]
        rows = [[r["field"], f"{r['vocabulary']:,}", f"{r['kept']:.1f}",
                 *([str(r["planted_dim"]), "yes" if r["in_planted_pair"] else "no"] if planted else [])]
                for r in per_field.iter_rows(named=True)]  # fmt: skip
        vocab_rho = [_rho(p["vocabulary"].to_list(), p["kept"].to_list()) for p in part.partition_by("seed")]
        lines += ["", f"## {dataset_name(dataset)} (`{here[0].feature_map.description}`)", "", *_md_table(header, rows),
                  "", "Spearman's rank correlation of vocabulary and kept size, per search: "
                  + ", ".join(_fmt(r) for r in vocab_rho) + "."]  # fmt: skip
        if planted:
            eds = [(function_recovery(s.artifact, s.feature_map) or {}).get("eds", {}).get("spearman") for s in here]
            lines.append(
                "On this stand-in the planted truth decides the useful size: Spearman of kept size and planted d_f "
                "(0 for a field in no planted pair; the EDS recovery score), per search: "
                + ", ".join(_fmt(r) for r in eds)
                + "; vocabulary carries no planted signal here."
            )
    vocab, emb = [r["vocabulary"] for r in paper.rows], [r["embedding"] for r in paper.rows]
    lines += ["", "## Paper (Avazu, 24 fields, ascending vocabulary)", "",
              *_md_table(["vocabulary", "embedding"], [[f"{v:,}", str(e)] for v, e in zip(vocab, emb, strict=True)]),
              "", f"Spearman's rank correlation of the paper's rows (computed here from the printed numbers; the "
              f"paper gives none): {_fmt(_rho(vocab, emb))}. Paper's claim: fields with larger vocabularies tend to "
              f"keep larger embeddings, but vocabulary is not the only factor."]  # fmt: skip
    md = out_dir / f"{stem}.md"
    write_text_atomic(md, "\n".join(lines) + "\n")
    return md


# --- statistics_AUC of the 2nd-order pairs --------------------------------------------------------------------


def _pair_fields(s: _Searched, units: list[str]) -> np.ndarray:
    """[U, 2] columns of the cache's ids for pair unit names ``"a×b"``."""
    column = {f.name: i for i, f in enumerate(s.feature_map.scalar_fields)}
    try:
        return np.array([[column[name] for name in unit.split(PAIR)] for unit in units], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"architecture artifact {s.path}: field {err} of its units is not an id column") from None


def _pair_statistics_auc(searched: list[_Searched], units_of: list[list[str]]) -> list[np.ndarray]:
    """statistics_AUC of each artifact's pair units; one data cache is read and scored once per set of pairs."""
    done: dict[tuple[Path, tuple[str, ...]], np.ndarray] = {}
    out = []
    for s, units in zip(searched, units_of, strict=True):
        key = (s.folder.resolve(), tuple(units))
        if key not in done:
            _, splits = cache.load(s.folder)
            train, test = splits["train"], splits["test"]
            done[key] = statistics_auc(np.asarray(train.ids), np.asarray(train.labels), np.asarray(test.ids),
                                       np.asarray(test.labels), _pair_fields(s, units))  # fmt: skip
        out.append(done[key])
    return out


def _order2(space: SpaceRecord) -> list[int]:
    return [i for i, u in enumerate(space.units) if u.count(PAIR) == 1]


def _planted_functions(fm: FeatureMap) -> dict[str, str]:
    # the functions stand-in's planted pair -> its function; {} on other data
    planted = fm.extra.get("planted") or {}
    names = [f.name for f in fm.fields]
    return {
        f"{names[a]}{PAIR}{names[b]}": fn
        for (a, b), fn in zip(planted.get("pairs") or [], planted.get("functions") or [], strict=False)
    }


# --- Figure 7 ---------------------------------------------------------------------------------------------------


def alpha_vs_statistics_auc(searched: list[_Searched]) -> pl.DataFrame:
    """One row per (search, 2nd-order pair, candidate function): seed, pair, function, alpha (α', raw), kept,
    statistics_auc (of the pair), planted (the stand-in's planted function of the pair, null otherwise)."""
    spaces = [s.space(SPACE) for s in searched]
    for s, space in zip(searched, spaces, strict=True):
        if space.weights is None:
            raise ValueError(f"architecture artifact {s.path} has no weights (a random draw?): Figure 7 plots α'")
    units_of = [[space.units[i] for i in _order2(space)] for space in spaces]
    aucs = _pair_statistics_auc(searched, units_of)
    rows = []
    for s, space, stat in zip(searched, spaces, aucs, strict=True):
        planted = _planted_functions(s.feature_map)
        for i, a in zip(_order2(space), stat, strict=True):
            for k, function in enumerate(space.options):
                rows.append({"dataset": s.feature_map.dataset, "seed": _seed(s), "pair": space.units[i],
                             "function": function, "alpha": float(space.weights[i][k]),
                             "kept": function in space.decisions[i], "statistics_auc": float(a),
                             "planted": planted.get(space.units[i])})  # fmt: skip
    schema = {"dataset": pl.String, "seed": pl.Int64, "pair": pl.String, "function": pl.String, "alpha": pl.Float64,
              "kept": pl.Boolean, "statistics_auc": pl.Float64, "planted": pl.String}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def write_figure7(spec: dict[str, Any], artifacts: list[Path], out_dir: Path, scale: str) -> Path:
    """AIM Figure 7 (module docstring): ``<key>.<scale>.png`` (x: statistics_AUC, y: |α'|, one point per slot,
    coloured by function, filled when kept), ``.csv`` (``alpha_vs_statistics_auc``) and ``.md``. Returns the .md."""
    searched = _load(artifacts)
    points = alpha_vs_statistics_auc(searched)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{spec['key']}.{scale}"
    write_text_atomic(out_dir / f"{stem}.csv", points.write_csv())

    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for function in points["function"].unique(maintain_order=True).to_list():
        for kept in (True, False):
            part = points.filter((pl.col("function") == function) & (pl.col("kept") == kept))
            color = COLORS.get(function, "gray")
            label = function if kept else f"{function} (dropped)"
            ax.scatter(part["statistics_auc"], part["alpha"].abs(), s=18, edgecolors=color,
                       facecolors=color if kept else "none", label=label)  # fmt: skip
    ax.set_xlabel("statistics_AUC of the pair (train CTR of its values, test AUC)")
    ax.set_ylabel("|α'| of the (pair, function) slot")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.suptitle(_title(spec, scale), fontsize=8)
    fig.tight_layout()
    save_png(fig, out_dir / f"{stem}.png")

    per_pair = points.group_by("dataset", "seed", "pair").agg(
        pl.col("alpha").abs().max().alias("alpha"), pl.col("kept").any(), pl.col("statistics_auc").first(),
        pl.col("planted").first())  # fmt: skip
    lines = [*figure_head(spec, stem), *_searches_lines(searched, scale)]
    for (dataset, seed), part in sorted(per_pair.partition_by("dataset", "seed", as_dict=True).items()):
        kept, dropped = part.filter(pl.col("kept")), part.filter(~pl.col("kept"))
        rho = _rho(part["alpha"].to_list(), part["statistics_auc"].to_list())
        line = (f"- {dataset_name(dataset)}, seed {seed}: {kept.height} of {part.height} pairs kept; mean "
                f"statistics_AUC of the kept pairs {_fmt(kept['statistics_auc'].mean(), '.4f')}, of the dropped "
                f"{_fmt(dropped['statistics_auc'].mean(), '.4f')}; Spearman of a pair's largest |α'| and its "
                f"statistics_AUC {_fmt(rho)}")  # fmt: skip
        planted = part.filter(pl.col("planted").is_not_null())
        if planted.height:
            line += (f"; the {planted.height} planted pairs: mean statistics_AUC "
                     f"{_fmt(planted['statistics_auc'].mean(), '.4f')}, {planted['kept'].sum()} kept")  # fmt: skip
        lines.append(line + ".")
    lines += ["", f"The plotted numbers (one row per pair and function) are in `{stem}.csv`."]
    md = out_dir / f"{stem}.md"
    write_text_atomic(md, "\n".join(lines) + "\n")
    return md


def _title(spec: dict[str, Any], scale: str) -> str:
    return "\n".join(textwrap.wrap(f"{spec['label']} (ours, scale {scale}): {spec['caption']}", 120))


def _searches_lines(searched: list[_Searched], scale: str) -> list[str]:
    data = sorted({s.feature_map.description for s in searched})
    return [
        f"- **Searches**: {len(searched)} (scale `{scale}`); artifacts: " + ", ".join(f"`{s.path}`" for s in searched),
        f"- **Data**: {'; '.join(data)}",
        "- **Paper's numbers**: the figure prints none; these are ours only.",
        f"- **Note**: {HONESTY_NOTE}",
        "",
    ]


# --- Figure 8 ---------------------------------------------------------------------------------------------------


def function_frequency(searched: list[_Searched]) -> pl.DataFrame:
    """Left panel: per order and function, kept slots summed over the searches, and their share of the order's
    kept slots. Columns: order, function, kept, share."""
    rows = []
    for s in searched:
        space = s.space(SPACE)
        for unit, decision in zip(space.units, space.decisions, strict=True):
            rows += [{"order": unit.count(PAIR) + 1, "function": f} for f in decision]
    frame = pl.DataFrame(rows, schema={"order": pl.Int64, "function": pl.String})
    options = searched[0].space(SPACE).options
    grid = pl.DataFrame({"order": sorted(set(frame["order"])) or [2]}).join(
        pl.DataFrame({"function": options}), how="cross"
    )  # every function of every order, 0 when never kept
    counts = frame.group_by("order", "function").len("kept")
    return (grid.join(counts, on=["order", "function"], how="left").with_columns(pl.col("kept").fill_null(0))
            .with_columns((pl.col("kept") / pl.col("kept").sum().over("order")).fill_nan(None).alias("share"))
            .sort("order", pl.col("function").replace_strict(options, list(range(len(options))))))  # fmt: skip


def functions_vs_statistics_auc(searched: list[_Searched]) -> pl.DataFrame:
    """Right panel: per search and 2nd-order pair, how many functions it kept and its statistics_AUC."""
    spaces = [s.space(SPACE) for s in searched]
    units_of = [[space.units[i] for i in _order2(space)] for space in spaces]
    aucs = _pair_statistics_auc(searched, units_of)
    rows = [{"dataset": s.feature_map.dataset, "seed": _seed(s), "pair": space.units[i],
             "functions_kept": len(space.decisions[i]), "statistics_auc": float(a)}
            for s, space, stat in zip(searched, spaces, aucs, strict=True)
            for i, a in zip(_order2(space), stat, strict=True)]  # fmt: skip
    schema = {"dataset": pl.String, "seed": pl.Int64, "pair": pl.String, "functions_kept": pl.Int64,
              "statistics_auc": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def write_figure8(spec: dict[str, Any], artifacts: list[Path], out_dir: Path, scale: str) -> Path:
    """AIM Figure 8 (module docstring): ``<key>.<scale>.png`` (two panels), ``.csv`` (``function_frequency``),
    ``_statistics_auc.csv`` (``functions_vs_statistics_auc``) and ``.md``. Returns the .md path."""
    searched = _load(artifacts)
    freq = function_frequency(searched)
    pairs = functions_vs_statistics_auc(searched)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{spec['key']}.{scale}"
    write_text_atomic(out_dir / f"{stem}.csv", freq.write_csv())
    write_text_atomic(out_dir / f"{stem}_statistics_auc.csv", pairs.write_csv())
    by_count = (pairs.group_by("functions_kept").agg(pl.col("statistics_auc").mean().alias("mean"),
                                                     pl.col("statistics_auc").std().alias("std"), pl.len().alias("n"))
                .sort("functions_kept"))  # fmt: skip

    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    orders = freq["order"].unique().sort().to_list()
    functions = freq["function"].unique(maintain_order=True).to_list()
    width = 0.8 / len(functions)
    for k, function in enumerate(functions):
        part = freq.filter(pl.col("function") == function).sort("order")
        xs = [i + (k - (len(functions) - 1) / 2) * width for i in range(len(orders))]
        left.bar(xs, part["kept"], width, color=COLORS.get(function), edgecolor="black", label=function)
    left.set_xticks(range(len(orders)), [f"order {p}" for p in orders])
    left.set_ylabel("kept (interaction, function) slots")
    left.set_title("selection frequency of each function", fontsize=9)
    left.legend(fontsize=7)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, pairs.height)  # [P]: overlapping points spread apart
    right.scatter(pairs["functions_kept"].to_numpy() + jitter, pairs["statistics_auc"], s=10, alpha=0.5)
    right.errorbar(by_count["functions_kept"], by_count["mean"], yerr=by_count["std"].fill_null(0.0), color="black",
                   marker="o", capsize=3, label="mean ± std")  # fmt: skip
    right.set_xticks(range(len(searched[0].space(SPACE).options) + 1))
    right.set_xlabel("functions kept for the 2nd-order pair")
    right.set_ylabel("statistics_AUC of the pair")
    right.set_title("statistics_AUC vs number of kept functions", fontsize=9)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(_title(spec, scale), fontsize=8)
    fig.tight_layout()
    save_png(fig, out_dir / f"{stem}.png")

    lines = [*figure_head(spec, stem), *_searches_lines(searched, scale)]
    lines += ["Left panel (kept slots per order, summed over the searches; share of the order's kept slots):", "",
              *_md_table(["order", *functions],
                         [[str(p), *(f"{r['kept']} ({_fmt(r['share'], '.0%')})" for r in
                                     freq.filter(pl.col("order") == p).iter_rows(named=True))] for p in orders]),
              "", "Right panel (2nd-order pairs by the number of functions kept):", "",
              *_md_table(["functions kept", "pairs", "statistics_AUC mean", "std"],
                         [[str(c), str(n), f"{m:.4f}", _fmt(sd, ".4f")] for c, m, sd, n in by_count.iter_rows()]),
              "", f"The plotted numbers are in `{stem}.csv` and `{stem}_statistics_auc.csv`."]  # fmt: skip
    md = out_dir / f"{stem}.md"
    write_text_atomic(md, "\n".join(lines) + "\n")
    return md
