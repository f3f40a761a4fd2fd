"""Avazu Kaggle ``train.csv``: the format's parser and four papers' preprocessing recipes.

Raw format: one example per line, 24 comma-separated columns ``id, click, hour, C1, banner_pos, site_id,
site_domain, site_category, app_id, app_domain, app_category, device_id, device_ip, device_model,
device_type, device_conn_type, C14..C21``, with the header line of those names (Kaggle's file) or without
one (a split-off part): a first line that starts with ``id,click`` is the header and must be exactly it.
``click`` is 0/1, ``hour`` is ``YYMMDDHH`` (UTC, 2014-10-21 00 .. 2014-10-30 23 in ``train.csv``); every
other column is an opaque categorical string (an empty cell is missing, id 0). ``id`` identifies the row
and is never a field.

Fields: the 21 categorical columns ``C1 .. C21`` (raw order, raw names), preceded by the raw ``hour``
(a categorical ``YYMMDDHH``) when ``raw_hour: true``, followed by the time fields ``time_fields`` lists,
derived from ``hour``: ``day`` (the date ``YYMMDD``), ``hour_of_day`` (``HH``), ``weekday`` (1 = Monday ..
7 = Sunday). Every field is categorical: tokens seen fewer than ``min_count`` times in the train split (or
never) are OOV. Nothing depends on the recipe name: each recipe is a config file that sets every key.

The config: ``AvazuSource`` is a frozen dataclass whose fields are those keys with their types (checked by
``ctrlab.run_config`` before any work); ``__post_init__`` checks their values; the cache key is the fields
(``ctrlab.data.checks.recipe_key``) less ``chunk_rows``, with ``path`` replaced by the file's fingerprint.

Recipes (``configs/data/avazu*.yaml``; ``recipe`` names the protocol in the cache key and the report)

``dynint`` (DynInt §4.1): "21 features in total ... all categorical", min_count 20, random 70/10/20.
    The paper does not list the 21. The file has 22 columns besides ``id`` and ``click``; DynInt states it
    does no feature engineering, only "feature transformation" (bucketing, frequency thresholding), which
    rules out derived time fields; the one column to leave out is then ``hour``, the only one that is a
    timestamp rather than a categorical attribute. So: the 21 categorical columns, ``raw_hour: false``,
    ``time_fields: []``.
``optinter`` (OptInter §V-A): 24 categorical fields, min_count 5, 80% train+valid / 20% test, valid a
    fraction of the 80% (``valid_fraction_of_train``, 0.1: the paper does not say). OptInter's released
    preprocessing drops ``id`` and the raw ``hour`` and adds ``day``, ``hour`` (of day) and ``weekday``:
    ``time_fields: [day, hour_of_day, weekday]`` (its weekday is ``YYMMDD mod 7``, a relabelling of the true
    weekday within one month, so the same partition of the rows).
``aim`` (AIM §4.1.1): 24 fields, 80/20 like optinter. AIM follows the PIN/AutoFIS processing, whose released
    Avazu set has the 21 categorical columns plus ``mday``, ``hour`` and ``wday`` (645,195 features, the
    number AIM quotes): ``time_fields: [day, hour_of_day, weekday]``. No threshold is stated: ``min_count:
    20``, the threshold of the same group's Criteo set; a threshold of 5 gives ~1.5M features on Avazu
    (AutoInt), far more than 645k, so it was well above 5.
``dpn`` (DPN App. B): 22 fields, split 7:2:1 train/valid/test as printed. DPN follows AFN, whose Avazu set
    (22 fields, 1,544,250 features) matches AutoInt's processing (threshold 5: 1,544,488 features with
    ``id`` as a 23rd, always-OOV field): all columns but ``id`` and ``click``, the raw ``hour`` kept as a
    categorical field (``raw_hour: true, time_fields: []``), ``min_count: 5``. AutoInt counts over the
    whole file; here, as everywhere, counts come from the train split only.

Splits are seeded random permutations of the lines (``ctrlab.data.tabular.random_split``); rows are written
in permutation order, so train rows are already shuffled. ``num_rows`` keeps the first N data lines.

Malformed lines (a column count other than 24, ``click`` other than 0/1, ``hour`` not an 8-digit
``YYMMDDHH`` time, a NUL byte) stop the build with a ``ValueError`` naming the file, the 1-based line
number (the header is line 1) and the column, or are dropped and counted with ``on_bad_line: skip``.
Streaming in bounded memory through ``ctrlab.data.tabular`` (one chunk + the train value counts + 4 bytes a
line for the split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ctrlab.data import tabular
from ctrlab.data.cache import file_fingerprint
from ctrlab.data.checks import NOT_IN_KEY, ON_BAD_LINE, check_choice, check_path, check_positive, recipe_key
from ctrlab.data.schema import FeatureMap
from ctrlab.data.tabular import Categorical, FieldSpec, ParsedChunk

RECIPE_VERSION = 1
RECIPES = ("dynint", "optinter", "aim", "dpn")
CATEGORICAL = [
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    *[f"C{i}" for i in range(14, 22)],
]
COLUMNS = ["id", "click", "hour", *CATEGORICAL]
HEADER = ",".join(COLUMNS).encode()
TIME_FIELDS = ("day", "hour_of_day", "weekday")
_DATE = pl.col("hour").str.slice(0, 6)
_HOUR_OK = (
    pl.col("hour").str.contains(r"^\d{6}([01]\d|2[0-3])$") & _DATE.str.to_date("%y%m%d", strict=False).is_not_null()
)
_TIME_TOKENS = {  # from a valid YYMMDDHH
    "day": _DATE,
    "hour_of_day": pl.col("hour").str.slice(6, 2),
    "weekday": _DATE.str.to_date("%y%m%d").dt.weekday().cast(pl.String),
}


# --------------------------------------------------------------------------------------------- format


def parse_chunk(data: bytes) -> ParsedChunk:
    """Split raw lines into ``label`` (Float32), ``hour`` and the 21 categorical columns (String, null =
    empty) and flag malformed lines, vectorised."""
    raw, nul = tabular.split_cells(data, ",", COLUMNS)
    bad = (pl.col("_ncols") != len(COLUMNS)) | ~pl.col("click").is_in(["0", "1"]) | ~_HOUR_OK
    bad_mask = raw.select(bad.fill_null(True)).to_series().to_numpy().copy()
    bad_mask[nul] = True
    frame = raw.select(
        (pl.col("click") == "1").cast(pl.Float32).alias("label"),
        *[pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in ["hour", *CATEGORICAL]],
    )
    return ParsedChunk(frame, bad_mask, raw if bad_mask.any() else None)


def explain_bad_line(chunk: ParsedChunk, row: int) -> str:
    """Why row ``row`` is malformed, e.g. ``", column click: '2' is not 0 or 1"``."""
    assert chunk.raw is not None, "a chunk keeps its raw columns when it has bad lines"
    cells = chunk.raw.row(row, named=True)
    n = cells["_ncols"]
    if n != len(COLUMNS):
        if n == 0:
            return ", column id: empty line, expected 24 comma-separated columns"
        column = COLUMNS[n] if n < len(COLUMNS) else "25"
        return f", column {column}: {n} comma-separated columns, expected 24 (id, click, hour, C1, ..., C21)"
    if cells["click"] not in ("0", "1"):
        return f", column click: {cells['click']!r} is not 0 or 1"
    if not chunk.raw[row].select(_HOUR_OK.fill_null(False)).item():
        return f", column hour: {cells['hour']!r} is not a YYMMDDHH time (8 digits: a date, an hour 00-23)"
    return ": contains a NUL byte"


def has_header(path: Path) -> bool:
    """Whether the file starts with the header line; a first line that starts like one must be it."""
    line = tabular.first_line(path)
    if not line.startswith(b"id,click"):
        return False
    if line != HEADER:
        raise ValueError(f"{path} line 1: header {line[:300].decode(errors='replace')!r}, expected {HEADER.decode()!r}")
    return True


# --------------------------------------------------------------------------------------------- source


@dataclass(frozen=True)
class AvazuSource:
    """The Avazu Kaggle ``train.csv`` with one recipe's settings; see the module docstring.

    The fields are the keys of ``configs/data/avazu*.yaml``. ``split`` is ``[train, valid, test]`` (with
    ``valid_fraction_of_train: null``) or ``[train_and_valid, test]`` (with ``0 < valid_fraction_of_train <
    1``). ``chunk_rows`` bounds memory and does not change the output.
    """

    name: str
    path: str = field(metadata=NOT_IN_KEY)  # in the cache key by its file's fingerprint
    recipe: str
    num_rows: int | None
    raw_hour: bool
    time_fields: Sequence[str]
    min_count: int
    split: Sequence[float]
    valid_fraction_of_train: float | None
    on_bad_line: str
    chunk_rows: int = field(metadata=NOT_IN_KEY)
    seed: int

    def __post_init__(self) -> None:
        check_choice("recipe", self.recipe, RECIPES)
        check_choice("on_bad_line", self.on_bad_line, ON_BAD_LINE)
        for t in self.time_fields:
            check_choice("time_fields[]", t, TIME_FIELDS)
        if len(set(self.time_fields)) != len(self.time_fields):
            raise ValueError(f"data.source.time_fields = {list(self.time_fields)} repeats a field")
        if not isinstance(self.raw_hour, bool):
            raise ValueError(f"data.source.raw_hour = {self.raw_hour!r} must be true or false")
        tabular.check_split(self.split, self.valid_fraction_of_train, " (see configs/data/avazu*.yaml)")
        check_positive("min_count", self.min_count)
        check_positive("num_rows", self.num_rows, nullable=True)
        check_positive("chunk_rows", self.chunk_rows)
        check_path("path", self.path, "AVAZU=/path/to/train.csv or data.source.path=...")

    @property
    def raw_path(self) -> Path:
        """``path``, the raw ``train.csv``."""
        return Path(self.path)

    def cache_key(self) -> dict[str, Any]:
        if not self.raw_path.is_file():
            raise FileNotFoundError(
                f"data.source.path = {str(self.raw_path)!r} is not a file: point AVAZU=... or "
                "data.source.path=... at the Avazu Kaggle train.csv"
            )
        return {
            "source": "avazu",
            "recipe_version": RECIPE_VERSION,
            **recipe_key(self),
            "file": file_fingerprint(self.raw_path),
        }

    def fields(self) -> list[FieldSpec]:
        """[hour] + the 21 categorical columns + the time fields, all categorical."""
        categorical = Categorical(self.min_count)
        tokens = {c: pl.col(c) for c in (["hour"] if self.raw_hour else []) + CATEGORICAL}
        tokens |= {t: _TIME_TOKENS[t] for t in self.time_fields}
        return [FieldSpec(name, token, categorical) for name, token in tokens.items()]

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids.npy`` int32 [N, F] and ``{split}_labels.npy`` float32 [N] into ``out_dir``;
        return the feature map."""
        file = tabular.open_text(self.raw_path, header=has_header(self.raw_path), max_lines=self.num_rows)  # pass 1
        built = tabular.build(
            tabular.Pipeline(
                where=str(self.raw_path),
                files=[file],
                parse=parse_chunk,
                explain=explain_bad_line,
                fields=self.fields(),
                split=tabular.random_split(file.lines, self.split, self.valid_fraction_of_train, self.seed),
                on_bad_line=self.on_bad_line,
                chunk_rows=self.chunk_rows,
            ),
            out_dir,
        )
        n = built.lines_read
        which = f"first {n:,} rows" if self.num_rows is not None else f"all {n:,} rows"
        skipped = f", {built.bad_lines_skipped:,} malformed lines skipped" if built.bad_lines_skipped else ""
        return FeatureMap(
            dataset=self.name,
            fields=built.fields,
            split_sizes=built.split_sizes,
            has_values=built.has_values,
            description=f"Avazu {self.raw_path.name} ({which}), {self.recipe} recipe{skipped}",
            extra={
                "recipe": self.recipe,
                "header": file.header,
                "lines_read": n,
                "bad_lines_skipped": built.bad_lines_skipped,
                "bad_line_examples": built.bad_line_examples,
            },
        )
