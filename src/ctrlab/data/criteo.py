"""Criteo Kaggle ``train.txt``: a streaming reader and the two papers' preprocessing recipes.

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

Streaming in bounded memory (DESIGN §3), vectorised with polars: lines are read ``chunk_rows`` at a time
as one string column and split at the tabs. Pass 1 counts the lines; pass 2 validates them and counts
each field's train values; pass 3 encodes each chunk (a hash lookup against the kept values) and sends its
rows to their permuted positions in ``.npy`` files preallocated with ``open_memmap``, through an external
bucket shuffle so that all disk I/O stays sequential (``RowPlacer``). Memory: one chunk's frames (~3 KB a
line) + the train value counts (tens of millions of distinct values on full Criteo: a few GB) + the
permutation (8 bytes a line).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrlab.data.cache import file_fingerprint
from ctrlab.data.schema import SPLITS, FeatureMap, Field

log = logging.getLogger(__name__)

RECIPE_VERSION = 1
RECIPES = ("dynint", "optinter")
ON_BAD_LINE = ("error", "skip")
NUMERIC_TRANSFORMS = ("log_squared", "log_of_square")
INT_FIELDS = [f"I{i}" for i in range(1, 14)]
CAT_FIELDS = [f"C{i}" for i in range(1, 27)]
FIELDS = INT_FIELDS + CAT_FIELDS
COLUMNS = ["label", *FIELDS]
_READ_BYTES = 1 << 24
_REPORT_BAD = 5  # how many malformed lines a skip reports by line number


def _choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(f"data.source.{key} = {value!r} is not one of {list(allowed)}")


# --------------------------------------------------------------------------------------------- reading


def count_lines(path: Path, max_lines: int | None) -> int:
    """Lines in ``path`` (a last line without a newline counts), at most ``max_lines``."""
    n, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(_READ_BYTES):
            n += block.count(b"\n")
            last = block[-1:]
            if max_lines is not None and n >= max_lines:
                return max_lines
    n += last != b"\n"
    return n if max_lines is None else min(n, max_lines)


def line_chunks(path: Path, chunk_rows: int, max_lines: int) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(index of the first line, number of lines, their bytes)`` for the first ``max_lines``
    lines of ``path``, at most ``chunk_rows`` lines at a time; every chunk ends with a newline."""
    parts: list[bytes] = []
    newlines: list[int] = []  # newline count of each part
    first, eof = 0, False
    read_bytes = min(_READ_BYTES, max(1 << 16, chunk_rows * 256))  # ~ a chunk: small chunks stay cheap
    with path.open("rb") as fh:
        while first < max_lines:
            want = min(chunk_rows, max_lines - first)
            while sum(newlines) < want and not eof:
                block = fh.read(read_bytes)
                if not block:
                    eof = True
                    if parts and not parts[-1].endswith(b"\n"):
                        parts.append(b"\n")
                        newlines.append(1)
                else:
                    parts.append(block)
                    newlines.append(block.count(b"\n"))
            if not parts:
                return
            total = sum(newlines)
            if total > want or (total == want and not parts[-1].endswith(b"\n")):
                # cut after the want-th newline, which lies in the last part
                before = total - newlines[-1]
                last = np.frombuffer(parts[-1], dtype=np.uint8)
                cut = int(np.flatnonzero(last == 10)[want - before - 1]) + 1
                chunk = b"".join([*parts[:-1], parts[-1][:cut]])
                rest = parts[-1][cut:]
                parts, newlines = ([rest], [total - want]) if rest else ([], [])
            else:
                chunk, parts, newlines = b"".join(parts), [], []
                want = min(total, want)
            yield first, want, chunk
            first += want


@dataclass
class Chunk:
    """One parsed chunk of raw lines.

    ``frame``: label (Float32), I1..I13 (Int64, null = empty), C1..C26 (String, null = empty), [n].
    ``bad``: bool [n], lines that are malformed (their frame row is garbage). ``first``: 0-based index of
    the chunk's first line in the file.
    """

    first: int
    frame: pl.DataFrame
    bad: np.ndarray
    raw: pl.DataFrame | None  # the split string columns, kept only when there are bad lines to describe

    @property
    def size(self) -> int:
        return len(self.bad)


def _nul_lines(data: bytes) -> np.ndarray:
    """0-based indices (within ``data``) of lines that contain a NUL byte. [k]"""
    buf = np.frombuffer(data, dtype=np.uint8)
    return np.unique(np.searchsorted(np.flatnonzero(buf == 10), np.flatnonzero(buf == 0)))


def parse_chunk(first: int, data: bytes) -> Chunk:
    """Split raw lines into typed columns and flag malformed lines, vectorised (no loop over rows)."""
    nul = _nul_lines(data) if b"\x00" in data else np.empty(0, dtype=np.int64)
    if len(nul):  # NUL is the reader's column separator (one column per line): blank it, flag the line
        data = data.replace(b"\x00", b" ")
    lines = pl.read_csv(
        data,
        separator="\x00",  # never a column separator: each line stays one string
        has_header=False,
        quote_char=None,
        schema={"line": pl.String},
        encoding="utf8-lossy",
        raise_if_empty=False,
    )
    # str.split + list.get beats str.split_exact by ~1.5x; columns a short line lacks come out null
    pieces = lines.select(pl.col("line").str.split("\t"))
    raw = pieces.select(
        pl.col("line").list.len().fill_null(0).alias("_ncols"),
        *[pl.col("line").list.get(j, null_on_oob=True).alias(c) for j, c in enumerate(COLUMNS)],
    )
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
    return Chunk(first, frame, bad_mask, raw if bad_mask.any() else None)


def describe_bad_line(path: Path, chunk: Chunk, row: int) -> str:
    """Why line ``chunk.first + row + 1`` is malformed, e.g. ``train.txt line 17, column I5: 'abc' is
    not an integer``."""
    where = f"{path} line {chunk.first + row + 1}"
    assert chunk.raw is not None, "a chunk keeps its raw columns when it has bad lines"
    cells = chunk.raw.row(row, named=True)
    if cells["_ncols"] != len(COLUMNS):
        n = cells["_ncols"]
        if n == 0:
            return f"{where}, column label: empty line, expected 40 tab-separated columns"
        column = COLUMNS[n] if n < len(COLUMNS) else "41"
        return f"{where}, column {column}: {n} tab-separated columns, expected 40 (label, I1..I13, C1..C26)"
    if cells["label"] not in ("0", "1"):
        return f"{where}, column label: {cells['label']!r} is not 0 or 1"
    for c in INT_FIELDS:
        if cells[c] != "" and chunk.frame[c][row] is None:
            return f"{where}, column {c}: {cells[c]!r} is not an integer"
    return f"{where}: contains a NUL byte"


# --------------------------------------------------------------------------------------------- counting


class ValueCounter:
    """Running per-field value counts over chunks. Partial counts are merged like a binary counter (the
    newest merges into the one before while it is at least half that size), so each distinct value is
    re-aggregated O(log chunks) times and memory stays ~2x the distinct values."""

    def __init__(self, fields: list[str]) -> None:
        self.parts: dict[str, list[pl.DataFrame]] = {f: [] for f in fields}

    @staticmethod
    def _merge(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(frames).group_by("value").agg(pl.col("count").sum())

    def add(self, frame: pl.DataFrame) -> None:
        """Count the non-null values of each field column of ``frame`` (in parallel across fields)."""
        fields = list(self.parts)
        counts = pl.collect_all(
            [
                frame.lazy()
                .select(pl.col(f).alias("value"))
                .drop_nulls()
                .group_by("value")
                .agg(pl.len().cast(pl.Int64).alias("count"))
                for f in fields
            ]
        )
        for f, c in zip(fields, counts, strict=True):
            parts = self.parts[f]
            parts.append(c)
            while len(parts) > 1 and 2 * parts[-1].height >= parts[-2].height:
                parts[-2:] = [self._merge(parts[-2:])]

    def kept(self, field: str, min_count: int) -> pl.Series:
        """The field's values seen at least ``min_count`` times, in ascending order. [V]"""
        parts = self.parts[field]
        if not parts:
            return pl.Series("value", [], dtype=pl.Null)
        counts = self._merge(parts) if len(parts) > 1 else parts[0]
        return counts.filter(pl.col("count") >= min_count)["value"].sort()


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
        _choice("recipe", recipe, RECIPES)
        _choice("on_bad_line", on_bad_line, ON_BAD_LINE)
        split = [float(s) for s in split]
        if any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6:
            raise ValueError(f"data.source.split = {split} must be non-negative ratios summing to 1")
        if recipe == "dynint":
            _choice("numeric_transform", numeric_transform, NUMERIC_TRANSFORMS)
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

    # ----------------------------------------------------------------------------------------- split

    def _split_bounds(self, n: int) -> np.ndarray:
        """Start of train, valid, test and the end, in permutation order. [4]"""
        ratios = self.cfg["split"]
        if self.cfg["recipe"] == "dynint":
            n_train, n_valid = round(ratios[0] * n), round(ratios[1] * n)
        else:
            n_train_valid = round(ratios[0] * n)
            n_valid = round(self.cfg["valid_fraction_of_train"] * n_train_valid)
            n_train = n_train_valid - n_valid
        return np.array([0, n_train, n_train + n_valid, n], dtype=np.int64)

    # ----------------------------------------------------------------------------------------- encoding

    def _numeric_tokens(self) -> list[pl.Expr]:
        """dynint: I-values -> integer category tokens (v <= 2 -> v; v > 2 -> 2 + bucket >= 3; null stays)."""
        exprs = []
        for c in INT_FIELDS:
            ln = pl.col(c).cast(pl.Float64).log()
            bucket = (ln * ln) if self.cfg["numeric_transform"] == "log_squared" else (2.0 * ln)
            exprs.append(
                pl.when(pl.col(c) > 2).then(bucket.floor().cast(pl.Int64) + 2).otherwise(pl.col(c)).alias(c)
            )
        return exprs

    def _chunks(self, n_lines: int) -> Iterator[Chunk]:
        for first, n, data in line_chunks(self.path, self.chunk_rows, n_lines):
            chunk = parse_chunk(first, data)
            if chunk.size != n:  # the line reader must keep every line, empty ones too
                raise AssertionError(
                    f"{self.path}: parsed {chunk.size} rows from {n} lines at line {first + 1}"
                )
            yield chunk

    def _count_pass(self, n_lines: int, in_train: np.ndarray) -> _TrainStats:
        """Pass 2: validate every line; count the train split's values per field (after bucketing for
        dynint) and, for optinter, the train min/max of the numeric fields."""
        dynint = self.cfg["recipe"] == "dynint"
        stats = _TrainStats(ValueCounter(FIELDS if dynint else CAT_FIELDS))
        for chunk in self._chunks(n_lines):
            if chunk.bad.any():
                rows = np.flatnonzero(chunk.bad)
                if self.cfg["on_bad_line"] == "error":
                    raise ValueError(describe_bad_line(self.path, chunk, int(rows[0])))
                stats.examples += [
                    describe_bad_line(self.path, chunk, int(r))
                    for r in rows[: _REPORT_BAD - len(stats.examples)]
                ]
                stats.bad.append(chunk.first + rows)
            frame = chunk.frame.filter(
                pl.Series(in_train[chunk.first : chunk.first + chunk.size] & ~chunk.bad)
            )
            stats.counter.add(frame.with_columns(self._numeric_tokens()) if dynint else frame)
            if not dynint:
                stats.minmax.append(
                    frame.select(
                        *[pl.col(f).min().alias(f"{f}_min") for f in INT_FIELDS],
                        *[pl.col(f).max().alias(f"{f}_max") for f in INT_FIELDS],
                    )
                )
        return stats

    def _encoder(self, stats: _TrainStats) -> tuple[list[Field], list[pl.Expr], list[pl.Expr] | None, dict]:
        """The fields, and the expressions that turn a parsed chunk into ids [n, 39] and (optinter) values
        [n, 39]; plus facts for ``feature_map.extra``."""
        min_count = self.cfg["min_count"]
        fields, ids = [], []
        for f in stats.counter.parts:
            kept = stats.counter.kept(f, min_count)  # ids 1..V in value order; V + 1 is OOV
            oov = len(kept) + 1
            if f in CAT_FIELDS:  # an Enum cast is a ~2x faster lookup than replace_strict for strings
                lookup = (
                    pl.col(f).cast(pl.Enum(kept.cast(pl.String)), strict=False).to_physical().cast(pl.Int32)
                    + 1
                )
            else:
                lookup = pl.col(f).replace_strict(
                    kept,
                    pl.int_range(1, oov, dtype=pl.Int32, eager=True),
                    default=None,
                    return_dtype=pl.Int32,
                )
            fields.append(Field(f, oov + 1))
            ids.append(
                pl.when(pl.col(f).is_null())
                .then(pl.lit(0, pl.Int32))
                .otherwise(lookup.fill_null(oov))
                .alias(f)
            )
        if self.cfg["recipe"] == "dynint":
            return fields, ids, None, {"numeric_transform": self.cfg["numeric_transform"]}
        mm = pl.concat(stats.minmax)
        lo = {f: mm[f"{f}_min"].min() for f in INT_FIELDS}
        hi = {f: mm[f"{f}_max"].max() for f in INT_FIELDS}
        fields = [Field(f, 3, kind="numeric") for f in INT_FIELDS] + fields
        ids = [pl.col(f).is_not_null().cast(pl.Int32).alias(f) for f in INT_FIELDS] + ids
        values = [_minmax_scaled(f, lo[f], hi[f]) for f in INT_FIELDS]
        values += [pl.lit(1.0, pl.Float32).alias(f) for f in CAT_FIELDS]
        return fields, ids, values, {"numeric_min": lo, "numeric_max": hi}

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids.npy`` int32 [N, 39], ``{split}_labels.npy`` float32 [N] (and for optinter
        ``{split}_values.npy`` float32 [N, 39]) into ``out_dir``; return the feature map."""
        c = self.cfg
        dynint = c["recipe"] == "dynint"
        start = time.perf_counter()
        n_lines = count_lines(self.path, c["num_rows"])  # pass 1
        if n_lines == 0:
            raise ValueError(f"{self.path}: no lines to read")
        bounds = self._split_bounds(n_lines)
        # pos[l]: where line l lands in the seeded permutation; bounds cut it into train | valid | test
        pos = np.empty(n_lines, dtype=np.int64)
        pos[np.random.default_rng(c["seed"]).permutation(n_lines)] = np.arange(n_lines)
        stats = self._count_pass(n_lines, pos < bounds[1])
        log.info(
            "%s: %d lines validated and counted in %.1fs", self.path, n_lines, time.perf_counter() - start
        )

        bad = np.concatenate(stats.bad) if stats.bad else np.empty(0, dtype=np.int64)
        if len(bad):
            log.warning(
                "%s: skipped %d malformed lines, e.g. %s", self.path, len(bad), "; ".join(stats.examples)
            )
        if len(bad) == n_lines:
            raise ValueError(f"{self.path}: all {n_lines} lines are malformed, e.g. {stats.examples[0]}")
        # a good line's row in its split: its permutation position, less the split's start and the bad
        # lines that precede it in the same split
        bad_pos = np.sort(pos[bad])
        bad_before = np.searchsorted(bad_pos, bounds)  # [4]
        sizes = {
            s: int(bounds[i + 1] - bounds[i] - (bad_before[i + 1] - bad_before[i]))
            for i, s in enumerate(SPLITS)
        }
        fields, ids, values, facts = self._encoder(stats)

        # pass 3: encode every chunk and send its rows to their permuted positions
        kinds = {"ids": (np.int32, (len(FIELDS),)), "labels": (np.float32, ())}
        if values is not None:
            kinds["values"] = (np.float32, (len(FIELDS),))
        placer = RowPlacer(out_dir, sizes, kinds, bucket_rows=self.chunk_rows)
        for chunk in self._chunks(n_lines):
            good = ~chunk.bad
            frame = chunk.frame.filter(pl.Series(good))
            if dynint:
                frame = frame.with_columns(self._numeric_tokens())
            p = pos[chunk.first : chunk.first + chunk.size][good]
            split = np.searchsorted(bounds[1:3], p, side="right")  # 0 train, 1 valid, 2 test [n]
            dest = p - bounds[split] - (np.searchsorted(bad_pos, p) - bad_before[split])
            arrays = {"ids": frame.select(ids).to_numpy(order="c"), "labels": frame["label"].to_numpy()}
            if values is not None:
                arrays["values"] = frame.select(values).to_numpy(order="c")
            for i, s in enumerate(SPLITS):
                rows = np.flatnonzero(split == i)
                placer.add(s, dest[rows], {kind: arr[rows] for kind, arr in arrays.items()})
        placer.finish()
        seconds = time.perf_counter() - start
        log.info(
            "%s: %s cache built in %.1fs (%.0f rows/s)", self.path, c["recipe"], seconds, n_lines / seconds
        )

        which = f"first {n_lines:,} rows" if c["num_rows"] is not None else f"all {n_lines:,} rows"
        skipped = f", {len(bad):,} malformed lines skipped" if len(bad) else ""
        return FeatureMap(
            dataset=self.name,
            fields=fields,
            split_sizes=sizes,
            has_values=values is not None,
            description=f"Criteo {self.path.name} ({which}), {c['recipe']} recipe{skipped}",
            extra={
                "recipe": c["recipe"],
                "lines_read": n_lines,
                "bad_lines_skipped": len(bad),
                "bad_line_examples": stats.examples,
                **facts,
            },
        )


@dataclass
class _TrainStats:
    counter: ValueCounter
    minmax: list[pl.DataFrame] = dataclass_field(default_factory=list)  # per chunk: I{k}_min, I{k}_max
    bad: list[np.ndarray] = dataclass_field(default_factory=list)  # 0-based indices of malformed lines
    examples: list[str] = dataclass_field(default_factory=list)  # descriptions of the first few


def _minmax_scaled(field: str, lo: int | None, hi: int | None) -> pl.Expr:
    """``(x - lo) / (hi - lo)`` clipped to [0, 1]; missing -> 0.0. float32 [n]"""
    if lo is None:  # never present in the train split: nothing to scale by
        return pl.lit(0.0, pl.Float32).alias(field)
    x = ((pl.col(field).cast(pl.Float64) - lo) / max(hi - lo, 1)).clip(0.0, 1.0)
    return x.fill_null(0.0).cast(pl.Float32).alias(field)


class RowPlacer:
    """Writes rows at given positions of preallocated ``{split}_{kind}.npy`` files with sequential I/O only.

    Writing each chunk's rows straight into a memory map at their random positions touches every page of
    the output again and again: on full Criteo (7-15 GB of output) that means many times the output size
    of disk writes, or an output that must fit in the page cache. Instead ``add`` appends rows, with their
    positions, to one spill file per range of ``bucket_rows`` positions, and ``finish`` reads one range at a
    time, orders it in memory and writes it to its place in one go (an external bucket shuffle: every row
    is written twice, sequentially; memory is one bucket; disk, the output size once more at most).
    """

    def __init__(
        self, out_dir: Path, sizes: dict[str, int], kinds: dict[str, tuple[Any, tuple]], bucket_rows: int
    ) -> None:
        self.out_dir, self.sizes, self.kinds, self.bucket_rows = out_dir, sizes, kinds, bucket_rows
        self.record = np.dtype([("dest", np.int64), *[(k, dt, shape) for k, (dt, shape) in kinds.items()]])
        self.spill = out_dir / "_spill"
        self.spill.mkdir()
        for s in sizes:
            for kind, (dtype, shape) in kinds.items():  # a sparse file: disk is used as rows arrive
                np.lib.format.open_memmap(self._npy(s, kind), "w+", dtype, (sizes[s], *shape))

    def _npy(self, split: str, kind: str) -> Path:
        return self.out_dir / f"{split}_{kind}.npy"

    def _bucket(self, split: str, b: int) -> Path:
        return self.spill / f"{split}_{b}.bin"

    def add(self, split: str, dest: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        """Queue rows ``arrays[kind][i]`` ([n, ...]) for position ``dest[i]`` ([n]) of ``split``."""
        rec = np.empty(len(dest), dtype=self.record)
        rec["dest"] = dest
        for kind, arr in arrays.items():
            rec[kind] = arr
        bucket = dest // self.bucket_rows
        order = np.argsort(bucket, kind="stable")
        rec, bucket = rec[order], bucket[order]
        cuts = np.flatnonzero(np.diff(bucket)) + 1
        for part in np.split(rec, cuts):
            if len(part):
                with self._bucket(split, int(part["dest"][0] // self.bucket_rows)).open("ab") as fh:
                    fh.write(part.tobytes())

    def finish(self) -> None:
        """Write every queued row to its place; check that each position got exactly one row."""
        for split, size in self.sizes.items():
            files = {kind: self._npy(split, kind).open("r+b") for kind in self.kinds}
            try:
                for fh in files.values():  # leave each file at its first row
                    if np.lib.format.read_magic(fh) == (1, 0):
                        np.lib.format.read_array_header_1_0(fh)
                    else:
                        np.lib.format.read_array_header_2_0(fh)
                for b, lo in enumerate(range(0, size, self.bucket_rows)):
                    n = min(self.bucket_rows, size - lo)
                    path = self._bucket(split, b)
                    rec = np.fromfile(path, dtype=self.record) if path.exists() else np.empty(0, self.record)
                    at = rec["dest"] - lo
                    counts = np.bincount(at, minlength=n)
                    if len(rec) != n or len(counts) != n or (counts != 1).any():
                        raise AssertionError(
                            f"{split} rows {lo}..{lo + n}: {len(rec)} rows for {n} positions"
                        )
                    for kind, (dtype, shape) in self.kinds.items():
                        block = np.empty((n, *shape), dtype=dtype)
                        block[at] = rec[kind]
                        files[kind].write(block.tobytes())  # buckets come in order: a sequential write
                    path.unlink(missing_ok=True)
            finally:
                for fh in files.values():
                    fh.close()
        self.spill.rmdir()
