"""Criteo Kaggle ``train.txt``: the format's parser and the two papers' preprocessing recipes.

Raw format: one example per line, 40 tab-separated columns, no header: ``label`` (0/1), ``I1..I13``
(integer counts, may be empty or negative), ``C1..C26`` (hashed categorical values, may be empty). The 39
fields keep their raw names ``I1..I13, C1..C26``, in that order.

Recipes (``recipe``), each the paper's own protocol where the paper states one:

``dynint`` (DynInt §4.1; also xDeepInt and the Criteo winners)
    * Numeric fields are bucketed and treated as categorical: a value ``v > 2`` becomes the bucket
      ``floor(ln(v)^2)`` (``numeric_transform: log_squared``); ``v <= 2`` (0, 1, 2 and the negative
      counts) keeps its own category; an empty cell is missing (id 0). DynInt prints the transform as
      ``floor(log(V^2))``, i.e. ``floor(2 ln V)``, which squeezes counts up to ~2*10^7 into ~34 buckets,
      and attributes it to the Criteo winners, whose transform is ``floor(log(V)^2)`` (~290 buckets): we
      read the print as a typo. ``numeric_transform: log_of_square`` gives the printed form.
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

Both: rows are written to the cache in permutation order, so the train rows are already shuffled.
``num_rows`` keeps only the first N lines of the file (smoke runs). Within a field, kept values get ids
1..V in ascending order of the value (numbers for bucketed numeric fields, strings for C fields), so the
output does not depend on ``chunk_rows``, which is therefore not part of the cache key.

Malformed lines (a column count other than 40, a label other than 0/1, an I-value that is not an
integer, a NUL byte) stop the build with a ``ValueError`` naming the file, the 1-based line number and the
column, unless ``on_bad_line: skip``: then they are dropped, counted (``extra["bad_lines_skipped"]``) and
the first few logged. The split is drawn over all lines before bad ones are dropped, so a skipped line never
moves another line to another split. C-values are opaque strings (not checked to be hex).

Streaming in bounded memory (DESIGN §3) through ``ctrlab.data.tabular``, which this module feeds with the
parser and the recipe's fields: lines are read ``chunk_rows`` at a time as one string column and split at
the tabs. Memory: one chunk's frames (~3 KB a line) + the train value counts (tens of millions of distinct
values on full Criteo: a few GB) + the split positions (4 bytes a line).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from ctrlab.data import tabular
from ctrlab.data.cache import file_fingerprint
from ctrlab.data.schema import FeatureMap
from ctrlab.data.tabular import Categorical, FieldSpec, MinMax, ParsedChunk, check_choice

RECIPE_VERSION = 1
RECIPES = ("dynint", "optinter")
NUMERIC_TRANSFORMS = ("log_squared", "log_of_square")
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
    """An I-value -> an integer category token: ``v <= 2`` keeps ``v``; ``v > 2`` -> ``2 + bucket`` (>= 3)
    with bucket ``floor(ln(v)^2)`` (``log_squared``) or ``floor(ln(v^2))`` (``log_of_square``); null stays."""
    ln = pl.col(field).cast(pl.Float64).log()
    bucket = (ln * ln) if transform == "log_squared" else (2.0 * ln)
    return pl.when(pl.col(field) > 2).then(bucket.floor().cast(pl.Int64) + 2).otherwise(pl.col(field))


# --------------------------------------------------------------------------------------------- source


class CriteoSource:
    """The Criteo Kaggle ``train.txt`` with one of two recipes; see the module docstring.

    All arguments come from ``configs/data/criteo.yaml`` (``criteo_optinter.yaml`` for the other recipe).
    ``split`` is ``[train, valid, test]`` for ``dynint`` and ``[train_and_valid, test]`` for ``optinter``;
    ``valid_fraction_of_train`` is for ``optinter`` only and ``numeric_transform`` for ``dynint`` only
    (null otherwise). ``chunk_rows`` bounds memory and does not change the output.
    """

    def __init__(
        self,
        name: str,
        path: str,
        recipe: str,
        num_rows: int | None,
        min_count: int,
        split: Sequence[float],
        valid_fraction_of_train: float | None,
        numeric_transform: str | None,
        on_bad_line: str,
        chunk_rows: int,
        seed: int,
    ) -> None:
        check_choice("recipe", recipe, RECIPES)
        check_choice("on_bad_line", on_bad_line, tabular.ON_BAD_LINE)
        split = [float(s) for s in split]
        if any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6:
            raise ValueError(f"data.source.split = {split} must be non-negative ratios summing to 1")
        if recipe == "dynint":
            check_choice("numeric_transform", numeric_transform, NUMERIC_TRANSFORMS)
            if len(split) != 3 or valid_fraction_of_train is not None:
                raise ValueError(
                    "recipe dynint takes data.source.split = [train, valid, test] and "
                    "data.source.valid_fraction_of_train = null (use data=criteo)"
                )
        else:
            if len(split) != 2 or valid_fraction_of_train is None or not 0 < valid_fraction_of_train < 1:
                raise ValueError(
                    "recipe optinter takes data.source.split = [train_and_valid, test] and "
                    "0 < data.source.valid_fraction_of_train < 1 (use data=criteo_optinter)"
                )
            if numeric_transform is not None:
                raise ValueError(
                    "recipe optinter min-max scales numeric fields: data.source.numeric_transform "
                    "must be null (use data=criteo_optinter)"
                )
        if num_rows is not None and num_rows < 1:
            raise ValueError(f"data.source.num_rows = {num_rows} must be null (all rows) or positive")
        if chunk_rows < 1:
            raise ValueError(f"data.source.chunk_rows = {chunk_rows} must be positive")
        if str(path) in ("", "???"):
            raise ValueError("data.source.path is not set: CRITEO=/path/to/train.txt or data.source.path=...")
        self.name = name
        self.path = Path(path)
        self.cfg: dict[str, Any] = {
            "recipe": recipe,
            "num_rows": None if num_rows is None else int(num_rows),
            "min_count": int(min_count),
            "split": split,
            "valid_fraction_of_train": valid_fraction_of_train,
            "numeric_transform": numeric_transform,
            "on_bad_line": on_bad_line,
            "seed": int(seed),
        }
        self.chunk_rows = int(chunk_rows)

    def cache_key(self) -> dict[str, Any]:
        if not self.path.is_file():
            raise FileNotFoundError(
                f"data.source.path = {str(self.path)!r} is not a file: point CRITEO=... or "
                "data.source.path=... at the Criteo Kaggle train.txt"
            )
        return {
            "source": "criteo",
            "recipe_version": RECIPE_VERSION,
            **self.cfg,
            "file": file_fingerprint(self.path),
        }

    def fields(self) -> list[FieldSpec]:
        """The recipe's 39 output fields: I1..I13 (bucketed categorical, or min-max numeric), C1..C26."""
        c = self.cfg
        categorical = Categorical(c["min_count"])
        if c["recipe"] == "optinter":
            ints = [FieldSpec(f, pl.col(f), MinMax()) for f in INT_FIELDS]
        else:
            ints = [FieldSpec(f, bucketed(f, c["numeric_transform"]), categorical) for f in INT_FIELDS]
        return ints + [FieldSpec(f, pl.col(f), categorical) for f in CAT_FIELDS]

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids.npy`` int32 [N, 39], ``{split}_labels.npy`` float32 [N] (and for optinter
        ``{split}_values.npy`` float32 [N, 39]) into ``out_dir``; return the feature map."""
        c = self.cfg
        file = tabular.open_text(self.path, header=False, max_lines=c["num_rows"])  # pass 1
        split = tabular.random_split(file.lines, c["split"], c["valid_fraction_of_train"], c["seed"])
        built = tabular.build(
            tabular.Pipeline(
                where=str(self.path),
                files=[file],
                parse=parse_chunk,
                explain=explain_bad_line,
                fields=self.fields(),
                split=split,
                on_bad_line=c["on_bad_line"],
                chunk_rows=self.chunk_rows,
            ),
            out_dir,
        )
        if c["recipe"] == "optinter":
            facts = {
                "numeric_min": {f: built.encoded[f].facts["min"] for f in INT_FIELDS},
                "numeric_max": {f: built.encoded[f].facts["max"] for f in INT_FIELDS},
            }
        else:
            facts = {"numeric_transform": c["numeric_transform"]}
        n = built.lines_read
        which = f"first {n:,} rows" if c["num_rows"] is not None else f"all {n:,} rows"
        skipped = f", {built.bad_lines_skipped:,} malformed lines skipped" if built.bad_lines_skipped else ""
        return FeatureMap(
            dataset=self.name,
            fields=built.fields,
            split_sizes=built.split_sizes,
            has_values=built.has_values,
            description=f"Criteo {self.path.name} ({which}), {c['recipe']} recipe{skipped}",
            extra={
                "recipe": c["recipe"],
                "lines_read": n,
                "bad_lines_skipped": built.bad_lines_skipped,
                "bad_line_examples": built.bad_line_examples,
                **facts,
            },
        )
