"""libFM files as released with NFM/AFM (He & Chua 2017; Xiao et al. 2017): MovieLens-tag and Frappe.

Raw format (the libFM text format, as in github.com/hexiangnan/neural_factorization_machine ``data/frappe`` and
hexiangnan/attentional_factorization_machine ``data/ml-tag``): three files ``<prefix>.train.libfm``,
``<prefix>.validation.libfm``, ``<prefix>.test.libfm`` (``files``: ``train``, ``valid``, ``test``), one
example per line::

    label idx:1 idx:1 ...

``label`` is ``1`` / ``-1`` (NFM's files; ``0`` is accepted too, ``-1`` and ``0`` both become 0; a number
written ``+1`` or ``1.0`` is read as its value). Each ``idx`` is a *global* feature index over all fields
and every value is ``1`` (one-hot). The files do not name the fields: every row has exactly one active
index per field, written in field order, so the field of an index is its position in the line. The
fields (``fields`` in the config) are:

* MovieLens-tag (``ml-tag``, DPN Table 8): ``UserID, MovieID, tag`` - 2,006,859 rows, 90,445 indices
  (the AFM README: 668,953 tag applications; 3 x 668,953 = 2,006,859, i.e. two sampled negatives a
  positive, which NFM's README states for Frappe). NFM's paper splits the indices into 17,045 users,
  23,743 movies and 49,657 tags (sum 90,445); the sum is checked, the per-field counts could not be here.
* Frappe (``frappe``): ``user, item, daytime, weekday, isweekend, homework, cost, weather, country, city``
  - 288,609 rows, 5,382 indices. Checked against the NFM repository's ``data/frappe/README.txt`` (the
  field list and sizes 957, 4082, 7, 7, 2, 3, 2, 9, 80, 233; "Total features: 7363 - 1981 = 5382": the
  ``cnt`` field the README also lists was turned into the label and is not in the files) and against the
  rows of ``frappe.validation.libfm``: 10 indices a row, in ascending contiguous ranges user 0-956,
  item 957-5038, daytime 5039-5045, weekday 5046-5052, isweekend 5053-5054, homework 5055-5057,
  cost 5058-5059, weather 5060-5068, country 5069-5148, city 5149-5381.

Checks (each a ``ValueError`` naming the file, the 1-based line and the position / field, unless
``on_bad_line: skip``, which drops the line, counts it in ``extra["bad_lines_skipped"]`` and logs the
first few): a row whose number of indices is not ``len(fields)``; a label that is not -1, 0 or 1; a token
that is not ``idx:value`` with a non-negative integer ``idx``; a value other than 1; and an index that
appears at different positions in different rows (an index's field is the position where most of its
occurrences are, over all three files; every occurrence elsewhere is flagged). Whitespace is lenient:
runs of spaces or tabs, CRLF line ends and a missing final newline are fine; an empty line is an error.

Recipes (``recipe``; every other key is explicit in the config, so the recipe names the protocol and the
paper's dataset facts - instances, features - that a build of every row is compared against, with a
warning on a mismatch):

``dpn`` (MovieLens-tag, DPN Tables 1/2/9/10)
    DPN takes AFN's setting, and AFN uses NFM's data (its run script: MovieLens 3 fields and 2,006,859
    instances, Frappe 10 fields and 288,609). DPN prints "We split the dataset in 7:2:1"; NFM's
    released files are already a 7:2:1 split (NFM's protocol; for frappe the stored validation and test
    files are 4.16 MB and 2.08 MB of ~72-byte lines: ~57.7k and ~28.9k rows, 20% and 10% of 288,609), so
    ``split: given`` uses them as they are - the split the NFM/AFM/AFN numbers were scored on, and the
    only one a reported number can be compared with. ``split: random`` with ``ratios`` re-draws a seeded
    split over the pooled lines instead.
``nfm`` (Frappe, NFM/AFN): the given splits.

Releases with fewer files. ``split: given`` needs all three files. ``split: random`` pools whatever files
``files`` names, so a release of one file, or of train + test, is read by setting the others to null,
e.g. ``data.source.split=random data.source.files.train=all.libfm data.source.files.valid=null
data.source.files.test=null``. A file that is named must exist (a typo is never read as "no such file").

No paper of the chain (NFM, AFN, DPN) states a frequency threshold: ``min_count: 1`` keeps every index
seen in train (an index seen only in valid/test is still OOV, as for every source). Within a field, kept
indices get local ids 1..V in ascending order of the global index; V + 1 is OOV. ``num_rows`` keeps a
prefix of each file proportional to its size (smoke runs), so the given split keeps its proportions.

Splits are drawn over the lines of the files read (pooled in train, valid, test order) before any line is
checked: ``random`` cuts a seeded permutation of all lines at ``ratios`` (``ctrlab.data.tabular.random_split``);
``given`` permutes the train file's lines (``seed``; batches are cut from contiguous rows) and keeps the valid
and test files' lines in file order (``given_split``). So a line's split and its place in it depend only on
the seed, the number of lines and its line number, never on which other lines are malformed: a skipped line
leaves a gap, it moves no other line (``split_lines``).

The config: ``LibFMSource`` is a frozen dataclass whose fields are the keys of
``configs/data/{movielens_tag,frappe}.yaml`` with their types (checked by ``ctrlab.run_config`` before any
work); ``__post_init__`` checks their values; the cache key is the fields (``ctrlab.data.checks.recipe_key``),
with ``root`` replaced by the fingerprints of the files read.

The files are small (<= 2M rows): each is read whole and parsed with vectorised polars/numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrlab.data import tabular
from ctrlab.data.cache import SplitArrays, file_fingerprint, save_split
from ctrlab.data.checks import NOT_IN_KEY, ON_BAD_LINE, REPORT_BAD, check_choice, check_positive, recipe_key
from ctrlab.data.schema import SPLITS, FeatureMap, Field

log = logging.getLogger(__name__)

RECIPE_VERSION = 2  # 2: the split is drawn over all lines, so skipped malformed lines move no other line
RECIPES = {  # the paper's dataset facts each recipe is checked against (only when every row is read)
    "dpn": {"dataset": "MovieLens-tag", "instances": 2006859, "features": 90445},
    "nfm": {"dataset": "Frappe", "instances": 288609, "features": 5382},
}
SPLIT_MODES = ("given", "random")
_TOKEN = r"^(\d+):(.+)$"


@dataclass
class ParsedFile:
    """One libFM file: ``idx`` int64 [n, F] global indices, ``label`` float32 [n], ``bad`` bool [n]."""

    path: Path
    idx: np.ndarray
    label: np.ndarray
    bad: np.ndarray
    reason: pl.Series  # why each bad line is bad (null for good lines) [n]


def read_lines(path: Path) -> pl.Series:
    """Every line of ``path`` (a last line without a newline counts; an empty file has none). [n]"""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return pl.Series("line", lines, dtype=pl.String)


def parse_libfm(path: Path, lines: pl.Series, fields: Sequence[str]) -> ParsedFile:
    """Split each line into a label and ``len(fields)`` indices and flag malformed lines, vectorised."""
    num = len(fields)
    tokens = pl.DataFrame({"line": lines}).select(
        pl.col("line").str.replace_all(r"\s+", " ").str.strip_chars().str.split(" ").alias("t")
    )
    cols = tokens.select(
        pl.col("t").list.len().alias("n"),
        pl.col("t").list.get(0).alias("label"),
        *[pl.col("t").list.get(j + 1, null_on_oob=True).alias(f"t{j}") for j in range(num)],
    )
    label = pl.col("label").cast(pl.Float64, strict=False)
    idx = [pl.col(f"t{j}").str.extract(_TOKEN, 1).cast(pl.Int64, strict=False).alias(f"i{j}") for j in range(num)]
    val = [pl.col(f"t{j}").str.extract(_TOKEN, 2).cast(pl.Float64, strict=False).alias(f"v{j}") for j in range(num)]
    parsed = cols.with_columns(label.alias("y"), *idx, *val)

    # the first problem of each line, in reading order
    reason = pl.when(pl.col("label") == "").then(pl.lit("empty line"))
    expected = f"expected {num} ({', '.join(fields)})"
    missing = pl.col("n").replace_strict(
        {k: f"position {k} (field {f})" for k, f in enumerate(fields, start=1)}, default=None, return_dtype=pl.String
    )  # the first position a short row lacks
    reason = reason.when(pl.col("n") < num + 1).then(
        pl.format("{}: missing, the line has {} indices, {}", missing, pl.col("n") - 1, pl.lit(expected))
    )
    reason = reason.when(pl.col("n") > num + 1).then(
        pl.format("position {}: the line has {} indices, {}", pl.lit(num + 1), pl.col("n") - 1, pl.lit(expected))
    )
    reason = reason.when(pl.col("y").is_in([-1.0, 0.0, 1.0]).fill_null(False).not_()).then(
        pl.format("label: {} is not -1, 0 or 1", pl.col("label"))
    )
    for j, f in enumerate(fields):
        reason = reason.when(pl.col(f"i{j}").is_null()).then(
            pl.format("position {} (field {}): {} is not idx:value", pl.lit(j + 1), pl.lit(f), pl.col(f"t{j}"))
        )
        reason = reason.when(pl.col(f"v{j}") != 1.0).then(
            pl.format(
                "position {} (field {}): {} has value {}, expected 1 (one-hot)",
                pl.lit(j + 1),
                pl.lit(f),
                pl.col(f"t{j}"),
                pl.col(f"v{j}"),
            )
        )
    reasons = parsed.select(reason.otherwise(None).alias("reason"))["reason"]
    bad = reasons.is_not_null().to_numpy()
    ids = parsed.select(pl.col(f"i{j}").fill_null(-1) for j in range(num)).to_numpy().astype(np.int64)
    y = (parsed["y"].fill_null(0.0).fill_nan(0.0).to_numpy() > 0).astype(np.float32)
    return ParsedFile(path, ids.reshape(len(lines), num), y, bad, reasons)


def position_conflicts(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For indices [N, F], each index's field = the position holding most of its occurrences (ties: the
    lower position). Returns ``conflict`` bool [N, F] (an occurrence elsewhere), and ``home`` [N, F] and
    ``home_count`` [N, F], the home position of that cell's index and how many rows have it there."""
    n, num = idx.shape
    if n == 0:
        empty = np.zeros((0, num), dtype=np.int64)
        return np.zeros((0, num), dtype=bool), empty, empty
    key = idx.ravel() * num + np.tile(np.arange(num), n)  # one key per (index, position)
    pairs, counts = np.unique(key, return_counts=True)
    pair_idx, pair_pos = pairs // num, pairs % num
    order = np.lexsort((pair_pos, -counts, pair_idx))  # by index, then most frequent, then lowest position
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_idx[order][1:] != pair_idx[order][:-1]
    best = order[first]
    uniq, home_pos, home_n = pair_idx[best], pair_pos[best], counts[best]
    at = np.searchsorted(uniq, idx)  # every index is in uniq
    home = home_pos[at]
    return home != np.arange(num)[None, :], home, home_n[at]


def encode_column(train: np.ndarray, columns: Sequence[np.ndarray], min_count: int) -> tuple[list[np.ndarray], int]:
    """Local ids for one field: values seen >= ``min_count`` times in ``train`` -> 1..V in ascending order,
    anything else -> V + 1 (OOV). Returns the encoded ``columns`` (int32) and the vocab size V + 2."""
    values, counts = np.unique(train, return_counts=True)
    kept = values[counts >= min_count]
    oov = len(kept) + 1
    out = []
    for col in columns:
        at = np.searchsorted(kept, col)
        hit = at < len(kept)
        hit[hit] = kept[at[hit]] == col[hit]
        out.append(np.where(hit, at + 1, oov).astype(np.int32))
    return out, oov + 1


def given_split(lengths: Sequence[int], seed: int) -> tabular.SplitPlan:
    """The files' own split, over the lines of the train, valid and test files (``lengths``, in that order,
    pooled): the train file's lines get a seeded permutation (batches are cut from contiguous rows), the valid
    and test files' lines follow in file order."""
    n_train, n = lengths[0], sum(lengths)
    pos = np.concatenate([tabular.seeded_positions(n_train, seed), np.arange(n_train, n)])
    return tabular.SplitPlan(pos, np.cumsum([0, *lengths]))


def split_lines(plan: tabular.SplitPlan, good: np.ndarray) -> dict[str, np.ndarray]:
    """The good lines (bool [n]) of each split in the order of their positions: a bad line leaves a gap and moves
    no other line. Returns each split's line numbers (0-based over the pooled files). {split: [n_split]}"""
    line_at = np.empty(len(plan.pos), dtype=np.int64)  # the line at each position
    line_at[plan.pos] = np.arange(len(plan.pos))
    lines = {s: line_at[plan.bounds[i] : plan.bounds[i + 1]] for i, s in enumerate(SPLITS)}
    return {s: at[good[at]] for s, at in lines.items()}


@dataclass(frozen=True)
class LibFMSource:
    """NFM's libFM files (MovieLens-tag, Frappe) with the ``dpn`` or ``nfm`` recipe; see the module docstring.

    The fields are the keys of ``configs/data/{movielens_tag,frappe}.yaml``: ``root`` is the folder holding
    ``files`` (``train`` / ``valid`` / ``test`` file names; with ``split: random`` any of them may be null),
    ``fields`` the field names in position order, ``split`` ``given`` or ``random`` (then ``ratios``
    [train, valid, test]).
    """

    name: str
    root: str = field(metadata=NOT_IN_KEY)  # in the cache key by its files' fingerprints
    files: Mapping[str, str | None]
    fields: Sequence[str]
    recipe: str
    split: str
    ratios: Sequence[float]
    min_count: int
    num_rows: int | None
    on_bad_line: str
    seed: int

    def __post_init__(self) -> None:
        check_choice("recipe", self.recipe, list(RECIPES))
        check_choice("split", self.split, SPLIT_MODES)
        check_choice("on_bad_line", self.on_bad_line, ON_BAD_LINE)
        unknown = sorted(set(self.files) - set(SPLITS))
        if unknown:
            raise ValueError(f"data.source.files has keys {unknown}: allowed keys are {list(SPLITS)}")
        if self.split == "given" and len(self.paths) < len(SPLITS):
            lacking = ", ".join(f"data.source.files.{s}" for s in SPLITS if s not in self.paths)
            raise ValueError(
                f"data.source.split = 'given' needs a train, a valid and a test file, but {lacking} is null or "
                "absent; data.source.split=random re-splits the files there are"
            )
        if not self.paths:
            raise ValueError(
                f"data.source.files = {dict(self.files)} names no file: set at least one of {list(SPLITS)}"
            )
        ratios = [float(r) for r in self.ratios]
        if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
            raise ValueError(f"data.source.ratios = {ratios} must be three non-negative numbers summing to 1")
        fields = [str(f) for f in self.fields]
        if not fields or len(set(fields)) != len(fields):
            raise ValueError(f"data.source.fields = {fields} must be distinct names, one per position")
        check_positive("min_count", self.min_count)
        check_positive("num_rows", self.num_rows, nullable=True)

    @property
    def paths(self) -> dict[str, Path]:
        """The files the release has (those ``files`` names), in split order."""
        return {s: Path(self.root) / self.files[s] for s in SPLITS if self.files.get(s) is not None}

    def cache_key(self) -> dict[str, Any]:
        fewer = "; or, with data.source.split=random, data.source.files.{}=null for a release without it"
        for s, p in self.paths.items():
            if not p.is_file():
                raise FileNotFoundError(
                    f"data.source.root / files.{s} = {str(p)!r} is not a file (set data.source.root, or the "
                    f"environment variable named in configs/data/{fewer.format(s)})"
                )
        return {
            "source": "libfm",
            "recipe_version": RECIPE_VERSION,
            **recipe_key(self),
            "files": {s: file_fingerprint(p) for s, p in self.paths.items()},
        }

    def _read(self) -> dict[str, ParsedFile]:
        lines = {s: read_lines(p) for s, p in self.paths.items()}
        total = sum(len(v) for v in lines.values())
        if total == 0:
            raise ValueError(f"{self.root}: the libFM files {[p.name for p in self.paths.values()]} hold no lines")
        n_rows = self.num_rows
        if n_rows is not None and n_rows < total:  # a prefix of each file, in proportion to its size
            keep = {s: int(round(n_rows * len(v) / total)) for s, v in lines.items()}
            lines = {s: v.head(keep[s]) for s, v in lines.items()}
        return {s: parse_libfm(p, lines[s], self.fields) for s, p in self.paths.items()}

    def _check_positions(self, parsed: dict[str, ParsedFile]) -> list[str]:
        """Flag (as bad) every line with an index outside its field's position; return their descriptions."""
        files = list(parsed)  # the files read, in split order
        good = {s: ~p.bad for s, p in parsed.items()}
        idx = np.concatenate([parsed[s].idx[good[s]] for s in files])
        conflict, home, home_n = position_conflicts(idx)
        if not conflict.any():
            return []
        rows = np.flatnonzero(conflict.any(axis=1))
        where = np.concatenate([np.flatnonzero(good[s]) for s in files])  # line (0-based) of each good row
        file_of = np.concatenate([np.full(int(good[s].sum()), i) for i, s in enumerate(files)])
        descriptions = []
        for r in rows[: 1 if self.on_bad_line == "error" else REPORT_BAD]:
            j = int(np.flatnonzero(conflict[r])[0])
            h = int(home[r, j])
            path = parsed[files[file_of[r]]].path
            descriptions.append(
                f"{path} line {where[r] + 1}, position {j + 1} (field {self.fields[j]}): index {idx[r, j]} "
                f"is at position {h + 1} (field {self.fields[h]}) on {home_n[r, j]} lines"
            )
        if self.on_bad_line == "error":
            raise ValueError(descriptions[0])
        for i, s in enumerate(files):
            mine = rows[file_of[rows] == i]
            parsed[s].bad[where[mine]] = True
        return descriptions

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids.npy`` int32 [N, F] and ``{split}_labels.npy`` float32 [N]; return the map."""
        parsed = self._read()
        examples: list[str] = []
        for p in parsed.values():
            bad_rows = np.flatnonzero(p.bad)
            if len(bad_rows) == 0:
                continue
            described = [f"{p.path} line {r + 1}, {p.reason[int(r)]}" for r in bad_rows[:REPORT_BAD]]
            if self.on_bad_line == "error":
                raise ValueError(described[0])
            examples += described
        examples += self._check_positions(parsed)
        lines_read = {s: len(p.label) for s, p in parsed.items()}
        skipped = {s: int(p.bad.sum()) for s, p in parsed.items()}
        if sum(skipped.values()):
            log.warning(
                "%s: skipped %d malformed lines, e.g. %s",
                self.root,
                sum(skipped.values()),
                "; ".join(examples[:REPORT_BAD]),
            )
        # the files pooled, in split order; every line keeps its number, bad ones too (their indices are garbage)
        all_idx = np.concatenate([p.idx for p in parsed.values()])  # [n, F]
        all_labels = np.concatenate([p.label for p in parsed.values()])  # [n]
        good = ~np.concatenate([p.bad for p in parsed.values()])
        if not good.any():
            raise ValueError(f"{self.root}: no well-formed lines, e.g. {examples[0]}")
        if self.split == "random":
            plan = tabular.random_split(len(good), self.ratios, None, self.seed)
        else:
            plan = given_split([len(p.label) for p in parsed.values()], self.seed)
        rows = split_lines(plan, good)
        if len(rows["train"]) == 0:
            raise ValueError(f"{self.root}: the train split is empty")

        encoded = {s: np.empty((len(rows[s]), len(self.fields)), dtype=np.int32) for s in SPLITS}
        fields, ranges = [], {}
        for j, f in enumerate(self.fields):
            cols, vocab = encode_column(
                all_idx[rows["train"], j], [all_idx[rows[s], j] for s in SPLITS], self.min_count
            )
            for s, col in zip(SPLITS, cols, strict=True):
                encoded[s][:, j] = col
            fields.append(Field(f, vocab))
            ranges[f] = [int(all_idx[good, j].min()), int(all_idx[good, j].max())]
        for s in SPLITS:
            save_split(out_dir, s, SplitArrays(ids=encoded[s], labels=all_labels[rows[s]]))

        facts = RECIPES[self.recipe]
        distinct = int(len(np.unique(all_idx[good])))
        n_all = int(good.sum())
        if self.num_rows is None and (n_all, distinct) != (facts["instances"], facts["features"]):
            log.warning(
                "%s: %d rows and %d distinct indices, but %s has %d rows and %d features in the papers",
                self.root, n_all, distinct, facts["dataset"], facts["instances"], facts["features"],
            )  # fmt: skip
        sizes = {s: len(rows[s]) for s in SPLITS}
        which = f"first {n_all:,} rows" if self.num_rows is not None else f"{n_all:,} rows"
        skip_note = f", {sum(skipped.values()):,} malformed lines skipped" if sum(skipped.values()) else ""
        return FeatureMap(
            dataset=self.name,
            fields=fields,
            split_sizes=sizes,
            description=(
                f"{facts['dataset']} libFM files in {Path(self.root).name}/ ({which}, {self.split} split), "
                f"{self.recipe} recipe{skip_note}"
            ),
            extra={
                "recipe": self.recipe,
                "split": self.split,
                "lines_read": lines_read,
                "bad_lines_skipped": sum(skipped.values()),
                "bad_line_examples": examples[:REPORT_BAD],
                "index_ranges": ranges,  # min and max global index of each field, over all files
                "distinct_indices": distinct,  # over all files: the papers' "features"
                "features_kept": int(sum(f.vocab_size - 2 for f in fields)),  # train indices >= min_count
                "positives": float(all_labels[good].mean()),
                "paper": facts,
            },
        )
