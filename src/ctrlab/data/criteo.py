"""Criteo click logs: the format's parser and four papers' preprocessing recipes.

Raw format: one example per line, 40 tab-separated columns, no header: ``label`` (0/1), ``I1..I13``
(integer counts, may be empty or negative), ``C1..C26`` (hashed categorical values, may be empty). The 39
fields keep their raw names ``I1..I13, C1..C26``, in that order. The Kaggle ``train.txt`` (45.8M lines, 7
days) is one such file; the Criteo 1TB logs are 24 such files ``day_0 .. day_23`` (uncompressed; the
columns' order and hashing differ from Kaggle's, the format does not).

Recipes (``recipe``), each the paper's own protocol where the paper states one:

``dynint`` (DynInt §4.1 and xDeepInt, following the authors' released code)
    * Numeric fields are bucketed and treated as categorical. Default ``numeric_transform: log1p_square``:
      a value ``v >= 0`` becomes the bucket ``floor(ln(v^2 + 1))`` (0 and 1 -> 0, 2 -> 1, 3 and 4 -> 2,
      10 -> 4, 1000 -> 13; 33 buckets for counts up to 10^7). This is DynInt's printed ``floor(log(V^2))``
      as the DynInt / xDeepInt authors compute it in their own code (xDeepInt repository,
      ``src/transformation.py``), the ``+ 1`` keeping ``v = 0`` finite; for integers ``v > 2`` it equals
      ``floor(2 ln v)``. Their code squares negative counts into the positive buckets; we keep each
      negative value as its own category instead (only I2 has them, and a sign is another event than a
      count: -1 is not 1). An empty cell is missing (id 0; their code gives it the bucket -1, which is the
      same thing: a category of its own).
      ``numeric_transform: log_squared`` is the Criteo winners' ``floor(ln(v)^2)`` for ``v > 2`` (~290
      buckets; ``v <= 2``, the negatives included, keeps its own category), which DynInt's text names as
      the source of its transform and AutoInt applies.
    * Every field - the bucketed numeric ones too, which the paper treats "as categorical features" - maps
      values seen fewer than ``min_count`` (20) times in the train split to the field's OOV id
      (``vocab_size - 1``); values first seen in valid/test are OOV too. Empty cells are id 0.
    * Split: random 70/10/20 by a permutation of the lines drawn from ``seed``.

``optinter`` (OptInter §V-A, following DeepFM)
    * Numeric fields are not bucketed: ``x <- (x - min) / (max - min)`` with the min and max of the train
      split, clipped to [0, 1] (a valid/test value outside the train range would otherwise leave it). Each
      numeric field is ``Field(kind="numeric", vocab_size=3)``: id 1 is its one embedding row, scaled by
      the value; id 0 and value 0.0 mean missing (id 2, OOV, is never used but keeps the layout uniform).
      ``{split}_values.npy`` holds the scaled value of numeric fields and 1.0 for categorical ones. A value
      equal to the train min scales its embedding to zero, like a missing one: the recipe's doing.
    * Categorical fields: ``min_count`` 20, as in ``dynint``.
    * Split: 80% train+valid / 20% test (the paper); valid is ``valid_fraction_of_train`` of the 80% (the
      paper does not say how much; 0.1 in configs/data/criteo_optinter.yaml).

``aim`` (AIM §4.1.1, which follows the PIN/AutoFIS processing)
    * Data: the 1TB logs, days 6-12 for train + valid and day 13 for test: ``path`` a folder holding
      ``day_<k>`` files, ``train_days: [6, ..., 12]``, ``test_day: 13``; valid is a random
      ``valid_fraction_of_train`` (0.1; not stated) of the train days' lines. With ``path`` one file (the
      Kaggle ``train.txt`` fallback) the split is random: ``split: [0.8, 0.2]`` as for AIM's Avazu, valid
      again ``valid_fraction_of_train`` of the 80%. ``train_days``/``test_day`` are used with a folder only,
      ``split`` with a file only.
    * Numeric fields: AIM says only that numeric features are bucketed. Its data come from the PIN group's
      set (github.com/Atomu2014/Ads-RecSys-Datasets: "discretized by equal-size buckets", long-tail
      categories "appearing less than 20 times" removed, negatives down-sampled to ~50% positives; AIM's
      Table 1: 1e8 rows, 39 fields, 50% positives). That code walks a field's sorted values and closes a
      bucket once it holds more than the threshold of rows: ``numeric_transform: equal_frequency`` does
      that on the train split with ``min_count`` rows a bucket (the last bucket takes the remainder; any
      value falls in the bucket of its range, so there is no OOV; missing stays id 0, where that code
      sorted it in as -1). ``log1p_square`` / ``log_squared`` (bucketed as in ``dynint``) are allowed too.
    * Categorical fields: ``min_count`` 20 (the same set's threshold).
    * ``negative_downsampling: balance`` (the default of criteo_aim.yaml) keeps every positive and each
      negative with probability positives / negatives of its file (so ~50% positives, as in AIM's Table 1;
      that set down-sampled every day, test day included). The draws are a hash of (``seed``, line), so
      they do not depend on the chunking; the rate of each file is counted in an extra read of its labels.
      ``null`` keeps every line. Dropped lines leave the split like skipped malformed ones
      (``extra["lines_downsampled"]``).

``dpn`` (DPN App. B, which takes AFN's setting, which takes AutoInt's preprocessing)
    * DPN: "categorical and dense features are hashed to sparse one-hot features", so the numeric fields
      are bucketed and categorical, with AutoInt's transform (``log_squared``, ``dynint``'s option; AutoInt
      applies ``int(ln(v)^2)`` for ``v > 2``). AFN's code clips feature values to [0.001, 1], which rules
      out AutoInt's raw scaled numeric values.
    * ``min_count: 10``: AutoInt's Criteo threshold (no threshold is printed by DPN or AFN; AFN's 2.09M
      Criteo features suggest a lower one than the ~1.0M that 10 gives, which we cannot pin down).
    * Split: 7:2:1 train/valid/test as printed (``split: [0.7, 0.2, 0.1]``).

All: rows are written to the cache in permutation order, so the train rows are already shuffled (the test
day's rows keep their file order). ``num_rows`` keeps only the first N lines of each file (smoke runs).
Within a field, kept values get ids 1..V in ascending order of the value (numbers for bucketed numeric
fields, strings for C fields), so the output does not depend on ``chunk_rows``, which is therefore not part
of the cache key.

The config: ``CriteoSource`` is a frozen dataclass whose fields are the keys of ``configs/data/criteo*.yaml``
with their types (checked by ``ctrlab.run_config`` before any work); ``__post_init__`` checks their values and
how they combine; the cache key is the fields (``ctrlab.data.checks.recipe_key``) less ``chunk_rows``, with
``path`` replaced by the fingerprints of the files read.

Malformed lines (a column count other than 40, a label other than 0/1, an I-value that is not an
integer, a NUL byte) stop the build with a ``ValueError`` naming the file, the 1-based line number and the
column, unless ``on_bad_line: skip``: then they are dropped, counted (``extra["bad_lines_skipped"]``) and
the first few logged. The split is drawn over all lines before bad ones are dropped, so a skipped line never
moves another line to another split. C-values are opaque strings (not checked to be hex).

Streaming in bounded memory through ``ctrlab.data.tabular``, which this module feeds with the
parser and the recipe's fields: lines are read ``chunk_rows`` at a time as one string column and split at
the tabs. Memory: one chunk's frames (~3 KB a line) + the train value counts (tens of millions of distinct
values on full Criteo: a few GB) + the split positions (4 bytes a line read, 8 while they are drawn: 6-12
GB for the ~1.5e9 lines of days 6-13 of the 1TB logs, down-sampled or not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrlab.data import tabular
from ctrlab.data.cache import file_fingerprint
from ctrlab.data.checks import NOT_IN_KEY, ON_BAD_LINE, check_choice, check_path, check_positive, recipe_key
from ctrlab.data.schema import FeatureMap
from ctrlab.data.tabular import Categorical, EqualFrequency, FieldSpec, MinMax, ParsedChunk, TextFile

RECIPE_VERSION = 1
RECIPES = ("dynint", "optinter", "aim", "dpn")
NUMERIC_TRANSFORMS = ("log1p_square", "log_squared")  # bucketed, then categorical
AIM_NUMERIC_TRANSFORMS = (*NUMERIC_TRANSFORMS, "equal_frequency")
NEGATIVE_DOWNSAMPLING = (None, "balance")
INT_FIELDS = [f"I{i}" for i in range(1, 14)]
CAT_FIELDS = [f"C{i}" for i in range(1, 27)]
FIELDS = INT_FIELDS + CAT_FIELDS
COLUMNS = ["label", *FIELDS]


# --------------------------------------------------------------------------------------------- format


def parse_chunk(data: bytes) -> ParsedChunk:
    """Split raw lines into typed columns - label (Float32), I1..I13 (Int64), C1..C26 (String), null =
    empty - and flag malformed lines, vectorised (no loop over rows)."""
    raw, nul = tabular.split_cells(data, "\t", COLUMNS)
    ints = raw.select(pl.col(c).str.to_integer(strict=False) for c in INT_FIELDS)
    bad = (
        (pl.col("_ncols") != len(COLUMNS))
        | ~pl.col("label").is_in(["0", "1"])
        | pl.any_horizontal(pl.col(f"_{c}").is_null() & (pl.col(c) != "") for c in INT_FIELDS)
    )
    flags = pl.concat([raw, ints.rename(lambda c: f"_{c}")], how="horizontal").select(bad.fill_null(True))
    bad_mask = flags.to_series().to_numpy().copy()
    bad_mask[nul] = True
    frame = pl.concat(
        [
            raw.select((pl.col("label") == "1").cast(pl.Float32)),
            ints,
            raw.select(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in CAT_FIELDS),
        ],
        how="horizontal",
    )
    return ParsedChunk(frame, bad_mask, raw if bad_mask.any() else None)


def explain_bad_line(chunk: ParsedChunk, row: int) -> str:
    """Why row ``row`` is malformed, e.g. ``", column I5: 'abc' is not an integer"``."""
    assert chunk.raw is not None, "a chunk keeps its raw columns when it has bad lines"
    cells = chunk.raw.row(row, named=True)
    if cells["_ncols"] != len(COLUMNS):
        n = cells["_ncols"]
        if n == 0:
            return ", column label: empty line, expected 40 tab-separated columns"
        column = COLUMNS[n] if n < len(COLUMNS) else "41"
        return f", column {column}: {n} tab-separated columns, expected 40 (label, I1..I13, C1..C26)"
    if cells["label"] not in ("0", "1"):
        return f", column label: {cells['label']!r} is not 0 or 1"
    for c in INT_FIELDS:
        if cells[c] != "" and chunk.frame[c][row] is None:
            return f", column {c}: {cells[c]!r} is not an integer"
    return ": contains a NUL byte"


def bucketed(field: str, transform: str) -> pl.Expr:
    """An I-value -> an integer category token; null (missing) stays null.

    ``log1p_square``: ``v >= 0`` -> ``floor(ln(v^2 + 1))`` (>= 0); ``v < 0`` keeps ``v`` (< 0, apart from
    every bucket). ``log_squared``: ``v <= 2`` keeps ``v``; ``v > 2`` -> ``2 + floor(ln(v)^2)`` (>= 3, apart
    from the kept values)."""
    v = pl.col(field)
    x = v.cast(pl.Float64)
    if transform == "log1p_square":
        return pl.when(v >= 0).then((x * x).log1p().floor().cast(pl.Int64)).otherwise(v)
    return pl.when(v > 2).then((x.log() * x.log()).floor().cast(pl.Int64) + 2).otherwise(v)


def count_positive_lines(file: TextFile) -> int:
    """Lines of ``file`` whose label is 1 (the line starts with ``1<TAB>``), from the raw bytes."""
    n = 0
    for _, _, data in tabular.line_chunks(file.path, 1 << 18, file.lines, file.start):
        buf = np.frombuffer(data, dtype=np.uint8)
        starts = np.concatenate([[0], np.flatnonzero(buf[:-1] == 10) + 1])
        n += int(np.count_nonzero((buf[starts] == ord("1")) & (buf[np.minimum(starts + 1, len(buf) - 1)] == 9)))
    return n


def day_split(train: list[TextFile], test: TextFile, valid_fraction: float, seed: int) -> tabular.SplitPlan:
    """The train days' lines (in file order, then the test day's): a seeded permutation of the train days
    cut into train | valid (``valid_fraction`` of them), then the test day in file order."""
    n_train_valid = sum(f.lines for f in train)
    first = tabular.seeded_positions(n_train_valid, seed)
    n = n_train_valid + test.lines
    dtype = first.dtype if n < 2**32 else np.int64
    pos = np.concatenate([first.astype(dtype, copy=False), np.arange(n_train_valid, n, dtype=dtype)])
    n_valid = round(valid_fraction * n_train_valid)
    bounds = [0, n_train_valid - n_valid, n_train_valid, n]
    return tabular.SplitPlan(pos, np.array(bounds, dtype=np.int64))


# --------------------------------------------------------------------------------------------- source


@dataclass(frozen=True)
class CriteoSource:
    """Criteo (the Kaggle ``train.txt``, or the 1TB logs' day files) with one of four recipes; see the
    module docstring.

    The fields are the keys of ``configs/data/criteo*.yaml``. ``split`` is ``[train, valid, test]`` for
    ``dynint`` and ``dpn`` and ``[train_and_valid, test]`` for ``optinter`` and ``aim``;
    ``valid_fraction_of_train`` is for ``optinter`` and ``aim`` only and ``numeric_transform`` is null for
    ``optinter`` only. ``train_days``, ``test_day`` (with ``path`` a folder of ``day_<k>`` files) and
    ``negative_downsampling`` are for ``aim`` only (null otherwise; they default to null so that configs
    written before them keep working). ``chunk_rows`` bounds memory and does not change the output.
    """

    name: str
    path: str = field(metadata=NOT_IN_KEY)  # in the cache key by its files' fingerprints
    recipe: str
    num_rows: int | None
    min_count: int
    split: Sequence[float]
    valid_fraction_of_train: float | None
    numeric_transform: str | None
    on_bad_line: str
    chunk_rows: int = field(metadata=NOT_IN_KEY)
    seed: int
    train_days: Sequence[int] | None = None
    test_day: int | None = None
    negative_downsampling: str | None = None

    def __post_init__(self) -> None:
        recipe, split = self.recipe, [float(s) for s in self.split]
        check_choice("recipe", recipe, RECIPES)
        check_choice("on_bad_line", self.on_bad_line, ON_BAD_LINE)
        if any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6:
            raise ValueError(f"data.source.split = {split} must be non-negative ratios summing to 1")
        use = f"(use data={'criteo' if recipe == 'dynint' else f'criteo_{recipe}'})"
        if recipe in ("dynint", "dpn"):
            check_choice("numeric_transform", self.numeric_transform, NUMERIC_TRANSFORMS)
            if len(split) != 3 or self.valid_fraction_of_train is not None:
                raise ValueError(
                    f"recipe {recipe} takes data.source.split = [train, valid, test] and "
                    f"data.source.valid_fraction_of_train = null {use}"
                )
        else:
            fraction = self.valid_fraction_of_train
            if len(split) != 2 or fraction is None or not 0 < fraction < 1:
                raise ValueError(
                    f"recipe {recipe} takes data.source.split = [train_and_valid, test] and "
                    f"0 < data.source.valid_fraction_of_train < 1 {use}"
                )
            if recipe == "optinter" and self.numeric_transform is not None:
                raise ValueError(
                    "recipe optinter min-max scales numeric fields: data.source.numeric_transform "
                    "must be null (use data=criteo_optinter)"
                )
            if recipe == "aim":
                check_choice("numeric_transform", self.numeric_transform, AIM_NUMERIC_TRANSFORMS)
        check_choice("negative_downsampling", self.negative_downsampling, NEGATIVE_DOWNSAMPLING)
        train_days, test_day = self.train_days, self.test_day
        if recipe != "aim" and (train_days is not None or test_day is not None or self.negative_downsampling):
            raise ValueError(
                f"recipe {recipe} reads one file without sampling: data.source.train_days, test_day and "
                "negative_downsampling must be null (they are aim's)"
            )
        if (train_days is None) != (test_day is None):
            raise ValueError("data.source.train_days and data.source.test_day are set together (or both null)")
        if train_days is not None and (not train_days or test_day in train_days):
            raise ValueError(
                f"data.source.train_days = {list(train_days)} must be non-empty and leave out test_day = {test_day}"
            )
        check_positive("min_count", self.min_count)
        check_positive("num_rows", self.num_rows, nullable=True)
        check_positive("chunk_rows", self.chunk_rows)
        check_path("path", self.path, "CRITEO=/path/to/train.txt or data.source.path=...")

    @property
    def raw_path(self) -> Path:
        """``path``: the raw ``train.txt``, or (aim) the folder of ``day_<k>`` files."""
        return Path(self.path)

    @property
    def by_day(self) -> bool:
        """Whether ``path`` is a folder of day files (the 1TB layout) rather than one file."""
        return self.raw_path.is_dir()

    def _paths(self) -> list[Path]:
        """The raw files: one, or the train days' and then the test day's."""
        if not self.by_day:
            return [self.raw_path]
        if self.recipe != "aim" or self.train_days is None:
            raise ValueError(
                f"data.source.path = {str(self.raw_path)!r} is a folder: day files are read by recipe aim with "
                "data.source.train_days and test_day set (use data=criteo_aim); other recipes read one train.txt"
            )
        return [self.raw_path / f"day_{d}" for d in [*self.train_days, self.test_day]]

    def cache_key(self) -> dict[str, Any]:
        if not self.raw_path.exists():
            raise FileNotFoundError(
                f"data.source.path = {str(self.raw_path)!r} is not a file: point CRITEO=... or "
                "data.source.path=... at the Criteo Kaggle train.txt (or, for aim, a folder of day_<k> files)"
            )
        paths = self._paths()
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"{p} is not a file: data.source.train_days/test_day name the day_<k> files")
        key = {"source": "criteo", "recipe_version": RECIPE_VERSION, **recipe_key(self)}
        if self.by_day:
            return key | {"files": {p.name: file_fingerprint(p) for p in paths}}
        return key | {"file": file_fingerprint(self.raw_path)}

    def fields(self) -> list[FieldSpec]:
        """The recipe's 39 output fields: I1..I13 (bucketed categorical, equal-frequency buckets or min-max
        numeric), C1..C26 (categorical)."""
        categorical = Categorical(self.min_count)
        if self.recipe == "optinter":
            ints = [FieldSpec(f, pl.col(f), MinMax()) for f in INT_FIELDS]
        elif self.numeric_transform == "equal_frequency":
            ints = [FieldSpec(f, pl.col(f), EqualFrequency(self.min_count)) for f in INT_FIELDS]
        else:
            ints = [FieldSpec(f, bucketed(f, self.numeric_transform), categorical) for f in INT_FIELDS]
        return ints + [FieldSpec(f, pl.col(f), categorical) for f in CAT_FIELDS]

    def _balance(self, files: list[TextFile]) -> tuple[Callable[[int, ParsedChunk], np.ndarray], dict[str, float]]:
        """``negative_downsampling: balance``: the ``keep`` rule and each file's keep rate of negatives."""
        rates = {}
        for f in files:
            positives = count_positive_lines(f)
            rates[f.path.name] = min(1.0, positives / max(f.lines - positives, 1))
        ends = np.cumsum([f.lines for f in files])  # a chunk lies in one file: the file of its first line
        rate_of = list(rates.values())

        def keep(line: int, chunk: ParsedChunk) -> np.ndarray:
            rate = rate_of[int(np.searchsorted(ends, line, side="right"))]
            positive = chunk.frame["label"].to_numpy() == 1.0
            return positive | (tabular.line_uniforms(self.seed, line, chunk.size) < rate)

        return keep, rates

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids.npy`` int32 [N, 39], ``{split}_labels.npy`` float32 [N] (and for optinter
        ``{split}_values.npy`` float32 [N, 39]) into ``out_dir``; return the feature map."""
        files = [tabular.open_text(p, header=False, max_lines=self.num_rows) for p in self._paths()]  # pass 1
        if self.by_day:
            split = day_split(files[:-1], files[-1], self.valid_fraction_of_train, self.seed)
        else:
            split = tabular.random_split(files[0].lines, self.split, self.valid_fraction_of_train, self.seed)
        keep, rates = self._balance(files) if self.negative_downsampling == "balance" else (None, None)
        built = tabular.build(
            tabular.Pipeline(
                where=str(self.raw_path),
                files=files,
                parse=parse_chunk,
                explain=explain_bad_line,
                fields=self.fields(),
                split=split,
                on_bad_line=self.on_bad_line,
                chunk_rows=self.chunk_rows,
                keep=keep,
            ),
            out_dir,
        )
        if self.recipe == "optinter":
            facts = {
                "numeric_min": {f: built.encoded[f].facts["min"] for f in INT_FIELDS},
                "numeric_max": {f: built.encoded[f].facts["max"] for f in INT_FIELDS},
            }
        else:
            facts = {"numeric_transform": self.numeric_transform}
        if self.recipe == "aim":
            facts |= {
                "files": [f.path.name for f in files],
                "negative_downsampling": self.negative_downsampling,
                "negative_keep_rate": rates,
                "lines_downsampled": built.lines_dropped,
            }
        n = built.lines_read
        if self.num_rows is None:
            which = f"all {n:,} rows"
        else:
            which = f"{n:,} rows, at most {self.num_rows:,} a day" if len(files) > 1 else f"first {n:,} rows"
        if self.by_day:
            what = f"1TB logs {self.raw_path.name}/: days {list(self.train_days)} train+valid, day {self.test_day} test"
        else:
            what = self.raw_path.name
        sampled = f", {built.lines_dropped:,} negatives down-sampled" if keep is not None else ""
        skipped = f", {built.bad_lines_skipped:,} malformed lines skipped" if built.bad_lines_skipped else ""
        return FeatureMap(
            dataset=self.name,
            fields=built.fields,
            split_sizes=built.split_sizes,
            has_values=built.has_values,
            description=f"Criteo {what} ({which}), {self.recipe} recipe{sampled}{skipped}",
            extra={
                "recipe": self.recipe,
                "lines_read": n,
                "bad_lines_skipped": built.bad_lines_skipped,
                "bad_line_examples": built.bad_line_examples,
                **facts,
            },
        )
