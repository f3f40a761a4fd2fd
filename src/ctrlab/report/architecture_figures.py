"""OptInter Figures 5 and 6: how informative the field pairs are that each method was chosen for (eq. 21).

    MI({H}, y) = H(y) - H(y | H),   H = (x_i, x_j)      (eq. 21; ``report/mutual_information.py``)

scored on the TRAIN split of the data the architecture was searched on (the paper scores the training data; the
search itself fits the training loss), found through the artifact's provenance: the cache folder
``<paths.cache_dir>/<data.source.name>/<data.cache>``. The MI of a pair is a property of the data; only the
grouping by the chosen method (``pair_method`` space, options memorize | factorize | naive) comes from a search.

- Figure 5 (``write_mi_by_method``): per artifact (one search: a dataset x a seed), the mean MI of the pairs that
  took each method; per dataset and method, the mean and std of that over the artifacts (seeds). A grouped bar
  chart, one group per dataset.
- Figure 6 (``write_mi_heatmap``): one artifact. One .png with two panels side by side: (a) the MI of every pair
  as a heat map over the upper triangle of the [F, F] field grid (row = first field, column = second), (b) the
  chosen method per pair as a categorical map with a legend. On a synthetic stand-in the planted pairs
  (``feature_map.extra["planted"]``) are boxed on both panels: solid = memorized, dashed = factorized (or
  planted, for mechanisms without kinds), so one sees whether the memorized pairs are the planted ones.

Both write ``<stem>.png`` and ``<stem>.csv`` (the plotted numbers). The plug-in MI is biased upwards by about
(distinct pair values - 1) / (2 N): pairs of large vocabularies look slightly more informative than they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed
from matplotlib.patches import Patch, Rectangle
from matplotlib.patheffects import withStroke

from ctrlab.data import cache
from ctrlab.data.schema import FeatureMap
from ctrlab.models.optinter import OPTIONS, SPACE
from ctrlab.report.mutual_information import pair_mutual_information
from ctrlab.report.paper import dataset_name
from ctrlab.search.artifact import Artifact, load_decisions, read_artifact
from ctrlab.utils import write_text_atomic

FIGURE5 = "Fig. 5. Overall mutual information score of each method"
FIGURE6 = (
    "Fig. 6. (a) Heatmap of mutual information between each feature interaction and the label; "
    "(b) obtained optimal methods for feature interactions"
)
COLORS = {"memorize": "tab:red", "factorize": "tab:blue", "naive": "lightgray"}  # one per method, both figures
PLANTED_STYLE = {"memorized": "-", "factorized": "--", "planted": ":"}  # box line per planted kind
MI_LABEL = "MI with the label (nats, train split)"


@dataclass
class _Searched:
    """One artifact with the data it was searched on: its pairs' field indices, MI and chosen methods."""

    artifact: Artifact
    folder: Path  # the cache folder it was searched on
    feature_map: FeatureMap
    pairs: list[tuple[int, int]]  # [P] field indices (columns of the train ids) of each unit
    methods: list[str]  # [P] the chosen method of each pair
    mi: np.ndarray | None = None  # [P] eq. 21 on the train split, filled by _score


def cache_folder(path: Path, artifact: Artifact) -> Path:
    """The cache folder the artifact was searched on; raises naming the artifact when it is unknown or gone."""
    config = artifact.provenance.config or {}
    cache_dir = (config.get("paths") or {}).get("cache_dir")
    source = ((config.get("data") or {}).get("source") or {}).get("name")
    name = artifact.provenance.data.get("cache")
    if not (cache_dir and source and name):
        raise ValueError(
            f"architecture artifact {path}: its provenance does not locate the data it was searched on "
            f"(config paths.cache_dir={cache_dir!r}, config data.source.name={source!r}, data.cache={name!r}); "
            "the mutual information figures need an artifact written by a search stage or a random draw"
        )
    folder = Path(cache_dir) / source / name
    if not (folder / "feature_map.json").is_file():
        raise FileNotFoundError(
            f"architecture artifact {path} was searched on the data cache {folder}, which is gone: rebuild it by "
            "running the artifact's data config with the same paths.cache_dir (any run on it builds the cache), "
            "then draw the figure again"
        )
    return folder


def _load(path: str | Path) -> _Searched:
    """An artifact's pairs and methods and its cache folder, every check done (nothing is scored yet)."""
    path = Path(path)
    artifact = read_artifact(path)
    folder = cache_folder(path, artifact)
    fm = FeatureMap.load(folder / "feature_map.json")
    decisions = load_decisions(path, fm)  # refuses an artifact of other fields than the cache's
    if SPACE not in decisions:
        raise ValueError(
            f"architecture artifact {path} has no {SPACE!r} space (it has {sorted(decisions)}): the mutual "
            "information figures group OptInter's field pairs by method"
        )
    names = [f.name for f in fm.scalar_fields]  # the columns of the train ids
    index = {f"{names[i]}×{names[j]}": (i, j) for i, j in combinations(range(len(names)), 2)}  # OptInter's units
    units = next(s.units for s in artifact.spaces if s.name == SPACE)
    if unknown := [u for u in units if u not in index]:
        raise ValueError(
            f"architecture artifact {path}: units {unknown[:3]} of space {SPACE!r} are not pairs of the data's "
            f"fields ({', '.join(names[:5])}, ...)"
        )
    pairs = [index[u] for u in units]
    return _Searched(artifact, folder, fm, pairs, list(decisions[SPACE]))


def _score(searched: list[_Searched]) -> list[_Searched]:
    """Fill each artifact's MI; the train split of a cache is read and scored once for all its artifacts (the
    seeds of one dataset)."""
    done: dict[tuple[Path, tuple[tuple[int, int], ...]], np.ndarray] = {}
    for s in searched:
        key = (s.folder.resolve(), tuple(s.pairs))
        if key not in done:
            _, splits = cache.load(s.folder)
            train = splits["train"]
            done[key] = pair_mutual_information(np.asarray(train.ids), np.asarray(train.labels), s.pairs)
        s.mi = done[key]
    return searched


def save_png(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")  # renamed into place: a reader never sees half a figure
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


def _mi_by_method(searched: list[_Searched]) -> pl.DataFrame:
    """Figure 5's numbers. Per artifact the mean MI of the pairs of each method; per dataset and method:

    - ``runs``: artifacts (seeds) in which the method took at least one pair,
    - ``pairs``: pairs per artifact that took the method (mean over all artifacts of the dataset),
    - ``mi_mean``, ``mi_std``: mean and std (ddof 1; null for one run) over ``runs`` of the per-artifact mean.
    """
    rows = []
    for s in searched:
        methods = np.array(s.methods)  # [P]
        for m in OPTIONS:
            chosen = methods == m  # [P]
            mean = float(s.mi[chosen].mean()) if chosen.any() else None  # no pairs: no mean, not a zero
            rows.append({"dataset": s.feature_map.dataset, "method": m, "pairs": int(chosen.sum()), "mi": mean})
    order = pl.DataFrame({"method": list(OPTIONS), "rank": range(len(OPTIONS))})
    return (
        pl.DataFrame(rows, schema={"dataset": pl.String, "method": pl.String, "pairs": pl.Int64, "mi": pl.Float64})
        .group_by("dataset", "method")
        .agg(
            pl.col("mi").count().alias("runs"),
            pl.col("pairs").mean(),
            pl.col("mi").mean().alias("mi_mean"),
            pl.col("mi").std().alias("mi_std"),
        )
        .join(order, on="method")
        .sort("dataset", "rank")
        .drop("rank")
    )


def write_mi_by_method(artifacts: list[Path], out_dir: Path, scale: str) -> Path:
    """Figure 5: mean MI (eq. 21) of the pairs each method chose, per dataset; ``<out_dir>/figure5.<scale>``
    ``.png`` (grouped bars, std over seeds as error bars) and ``.csv`` (``_mi_by_method``'s columns). Returns the
    .png path."""
    if not artifacts:
        raise ValueError("write_mi_by_method needs at least one architecture artifact (one per dataset x seed)")
    searched = _score([_load(p) for p in artifacts])  # every artifact checked before any is scored
    table = _mi_by_method(searched)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"figure5.{scale}"
    write_text_atomic(out_dir / f"{stem}.csv", table.write_csv())

    datasets = list(dict.fromkeys(table["dataset"]))  # sorted by _mi_by_method
    fig = Figure(figsize=(max(4.5, 2.2 * len(datasets) + 1.5), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(OPTIONS)
    for k, method in enumerate(OPTIONS):
        part = {r["dataset"]: r for r in table.filter(pl.col("method") == method).iter_rows(named=True)}
        xs = [d + (k - (len(OPTIONS) - 1) / 2) * width for d in range(len(datasets))]
        means = [part[d]["mi_mean"] if d in part and part[d]["mi_mean"] is not None else np.nan for d in datasets]
        stds = [part[d]["mi_std"] if d in part and part[d]["mi_std"] is not None else 0.0 for d in datasets]
        bars = ax.bar(xs, means, width, yerr=stds, capsize=3, color=COLORS[method], edgecolor="black", label=method)
        pairs = [f"{part[d]['pairs']:g}" if d in part else "0" for d in datasets]
        ax.bar_label(bars, labels=pairs, fontsize=7, padding=2)  # pairs per run that took the method
    ax.set_xticks(range(len(datasets)), [dataset_name(d) for d in datasets])
    ax.set_ylabel(f"mean {MI_LABEL}")
    ax.legend(fontsize=8, title="method (bar label: pairs per run)", title_fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    runs = len(searched)
    fig.suptitle(f"{FIGURE5}\n(ours; {runs} search{'es' if runs > 1 else ''}, scale {scale}, error bar: std over "
                 "seeds)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    png = out_dir / f"{stem}.png"
    save_png(fig, png)
    return png


def _planted(fm: FeatureMap) -> dict[tuple[int, int], str]:
    """A stand-in's planted pairs -> their kind (memorized | factorized, or planted without kinds); {} otherwise."""
    planted = fm.extra.get("planted")
    if not planted:
        return {}
    kinds = planted.get("kinds") or ["planted"] * len(planted["pairs"])
    return {(int(a), int(b)): kind for (a, b), kind in zip(planted["pairs"], kinds, strict=True)}


def write_mi_heatmap(artifact: Path, out_dir: Path, scale: str, stem: str) -> Path:
    """Figure 6 of one artifact: ``<out_dir>/<stem>.png`` with (a) the MI heat map and (b) the method map side by
    side in one figure (module docstring), and ``<stem>.csv`` (field_a, field_b, mi, method, planted: the
    stand-in's planted kind of the pair, empty on real data). Returns the .png path."""
    (s,) = _score([_load(artifact)])
    fm = s.feature_map
    names = [f.name for f in fm.scalar_fields]
    planted = _planted(fm)
    table = pl.DataFrame(
        {
            "field_a": [names[i] for i, _ in s.pairs],
            "field_b": [names[j] for _, j in s.pairs],
            "mi": s.mi,
            "method": s.methods,
            "planted": [planted.get(p) for p in s.pairs],
        },
        schema={
            "field_a": pl.String,
            "field_b": pl.String,
            "mi": pl.Float64,
            "method": pl.String,
            "planted": pl.String,
        },  # fmt: skip
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"{stem}.csv", table.write_csv())

    shown = sorted({i for pair in s.pairs for i in pair})  # the crossed fields (Criteo's numeric ones are not)
    position = {field: k for k, field in enumerate(shown)}
    f = len(shown)
    rows, cols = np.array([[position[i], position[j]] for i, j in s.pairs]).T  # [P], [P]: row = first field
    mi_grid = np.full((f, f), np.nan)  # [F, F]; NaN (blank) below the diagonal and for pairs that are no unit
    mi_grid[rows, cols] = s.mi
    method_grid = np.full((f, f), np.nan)  # [F, F] index into OPTIONS
    method_grid[rows, cols] = [OPTIONS.index(m) for m in s.methods]

    fig = Figure(figsize=(12, 5.6))
    ax_mi, ax_method = fig.subplots(1, 2)
    image = ax_mi.imshow(np.ma.masked_invalid(mi_grid), cmap="viridis")
    fig.colorbar(image, ax=ax_mi, fraction=0.046, pad=0.04, label=MI_LABEL)
    ax_method.imshow(
        np.ma.masked_invalid(method_grid), cmap=ListedColormap([COLORS[m] for m in OPTIONS]), vmin=-0.5,
        vmax=len(OPTIONS) - 0.5,
    )  # fmt: skip
    handles = [Patch(facecolor=COLORS[m], edgecolor="black", label=m) for m in OPTIONS]
    halo = [withStroke(linewidth=3.5, foreground="white")]  # the box stays visible on every cell colour
    for (a, b), kind in planted.items():
        if a not in position or b not in position:
            continue
        for ax in (ax_mi, ax_method):
            ax.add_patch(Rectangle((position[b] - 0.5, position[a] - 0.5), 1, 1, fill=False, edgecolor="black",
                                   lw=1.5, linestyle=PLANTED_STYLE[kind], path_effects=halo))  # fmt: skip
    handles += [Patch(fill=False, edgecolor="black", linestyle=PLANTED_STYLE[k], label=f"planted: {k}")
                for k in dict.fromkeys(planted.values())]  # fmt: skip
    ax_method.legend(handles=handles, fontsize=7, loc="lower left")  # the empty lower triangle
    size = 7 if f <= 26 else 5
    for ax, title in ((ax_mi, "(a) mutual information with the label"), (ax_method, "(b) method chosen by the search")):
        ax.set_xticks(range(f), [names[i] for i in shown], rotation=90, fontsize=size)
        ax.set_yticks(range(f), [names[i] for i in shown], fontsize=size)
        ax.set_title(title, fontsize=9)
    prov = s.artifact.provenance
    fig.suptitle(f"{FIGURE6} (ours: {dataset_name(fm.dataset)}, {prov.kind} seed {prov.seed}, scale {scale})",
                 fontsize=8)  # fmt: skip
    fig.tight_layout()
    png = out_dir / f"{stem}.png"
    save_png(fig, png)
    return png
