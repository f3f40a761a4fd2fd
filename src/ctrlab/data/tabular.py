"""Delimited text files -> the encoded cache, streaming: the machinery every tabular reader shares.

A reader (``criteo.py``, ``avazu.py``, ``ipinyou.py``) supplies only what is its own: how to parse a chunk
of raw lines into a polars frame (``label`` + its columns, a bad-row mask; one parser for all files, or one
per file where the files differ) and to say why a row is bad, and, per recipe, the output fields - each a
token expression over the parsed columns and an encoding - and the split. This module does the rest, the
same way for every reader:

Passes over the files (vectorised with polars/numpy; memory bounded by ``chunk_rows``, the train value
counts and the per-line split positions)
    1. ``open_text`` counts each file's lines (after an optional header; at most ``num_rows``).
    2. Every chunk is parsed and validated; the train split's tokens are counted per field
       (``ValueCounter``). A malformed line raises ``ValueError`` naming the file, the 1-based line and the
       column, or - with ``on_bad_line: skip`` - is dropped, counted and the first few described. A recipe
       may also drop good lines (``Pipeline.keep``, e.g. negative down-sampling).
    3. Every chunk is parsed again, encoded to ids [and values] and its rows are sent to their split
       positions through ``RowPlacer`` (an external bucket shuffle with sequential disk I/O only).

Splits (``SplitPlan``)
    Each line of the concatenated files has a position ``pos`` and ``bounds`` cut the positions into
    train | valid | test: ``random_split`` draws a seeded permutation of all lines; a reader may build
    other plans (Criteo's day files). The plan is drawn over all lines *before* bad or dropped lines are
    known, so excluding a line never moves another line to another split: an excluded line only leaves a
    gap, closed by ranking the kept lines of each split by position.

Encodings (one per output field; ids: 0 missing, 1..V, V + 1 OOV, ``vocab_size`` V + 2)
    ``Categorical(min_count)``: tokens seen at least ``min_count`` times in the train split get ids 1..V
    in ascending token order (so the output does not depend on ``chunk_rows``); rarer tokens, tokens
    never seen in train and ``oov_token`` (a format's own "unknown value" marker) are OOV.
    ``EqualFrequency(min_rows)``: integer values are cut into buckets of at least ``min_rows`` train rows
    each (walking the train values in ascending order; the last bucket takes the remainder); any value,
    seen or not, falls in the bucket of its range, so OOV is never used.
    ``MinMax()``: a numeric field (one embedding row scaled by ``(x - min) / (max - min)`` of the train
    split, clipped to [0, 1]; id 1 when present, 0 and value 0.0 when missing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrlab.data.checks import REPORT_BAD
from ctrlab.data.schema import SPLITS, Field

log = logging.getLogger(__name__)

_READ_BYTES = 1 << 24


# --------------------------------------------------------------------------------------------- reading


def count_lines(path: Path, max_lines: int | None, start: int = 0) -> int:
    """Lines in ``path`` from byte ``start`` on (a last line without a newline counts), at most
    ``max_lines``."""
    n, last = 0, b"\n"
    with path.open("rb") as fh:
        fh.seek(start)
        while block := fh.read(_READ_BYTES):
            n += block.count(b"\n")
            last = block[-1:]
            if max_lines is not None and n >= max_lines:
                return max_lines
    n += last != b"\n"
    return n if max_lines is None else min(n, max_lines)


def line_chunks(path: Path, chunk_rows: int, max_lines: int, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(index of the first line, number of lines, their bytes)`` for the first ``max_lines``
    lines of ``path`` from byte ``start`` on, at most ``chunk_rows`` lines at a time; every chunk ends with
    a newline."""
    parts: list[bytes] = []
    newlines: list[int] = []  # newline count of each part
    first, eof = 0, False
    read_bytes = min(_READ_BYTES, max(1 << 16, chunk_rows * 256))  # ~ a chunk: small chunks stay cheap
    with path.open("rb") as fh:
        fh.seek(start)
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


@dataclass(frozen=True)
class TextFile:
    """One raw file: ``lines`` data lines from byte ``start`` on (after the header line, if any)."""

    path: Path
    header: bool
    start: int
    lines: int

    def line_number(self, index: int) -> int:
        """The 1-based line number in the file of data line ``index`` (0-based)."""
        return index + 1 + self.header


def open_text(path: Path, header: bool, max_lines: int | None) -> TextFile:
    """Pass 1 over ``path``: skip its header line when ``header``; count its data lines (at most
    ``max_lines``)."""
    start = 0
    if header:
        with path.open("rb") as fh:
            start = len(fh.readline())
    return TextFile(path, header, start, count_lines(path, max_lines, start))


def first_line(path: Path, max_bytes: int = 1 << 16) -> bytes:
    """The first line of ``path`` (at most ``max_bytes``), without its line end."""
    with path.open("rb") as fh:
        return fh.readline(max_bytes).rstrip(b"\r\n")


def _nul_lines(data: bytes) -> np.ndarray:
    """0-based indices (within ``data``) of lines that contain a NUL byte. [k]"""
    buf = np.frombuffer(data, dtype=np.uint8)
    return np.unique(np.searchsorted(np.flatnonzero(buf == 10), np.flatnonzero(buf == 0)))


def text_lines(data: bytes) -> tuple[pl.Series, np.ndarray]:
    """Raw lines as one String series ``line`` (null = an empty line), [n]; and the 0-based indices of the
    lines that held a NUL byte [k] (blanked here: the format should flag them)."""
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
    return lines["line"], nul


def split_cells(data: bytes, separator: str, columns: Sequence[str]) -> tuple[pl.DataFrame, np.ndarray]:
    """Split raw lines into string cells, vectorised: ``_ncols`` (the line's column count, 0 for an empty
    line) and one String column per name in ``columns`` (null where the line is too short), [n]; and the
    0-based indices of the lines that held a NUL byte [k] (blanked, see ``text_lines``)."""
    lines, nul = text_lines(data)
    # str.split + list.get beats str.split_exact by ~1.5x; columns a short line lacks come out null
    pieces = lines.to_frame().select(pl.col("line").str.split(separator))
    raw = pieces.select(
        pl.col("line").list.len().fill_null(0).alias("_ncols"),
        *[pl.col("line").list.get(j, null_on_oob=True).alias(c) for j, c in enumerate(columns)],
    )
    return raw, nul


@dataclass
class ParsedChunk:
    """One parsed chunk of raw lines.

    ``frame``: ``label`` (Float32) and the format's typed columns (null = empty), [n]. ``bad``: bool [n],
    malformed lines (their frame row is garbage). ``raw``: the string cells, kept only when there are bad
    lines to describe.
    """

    frame: pl.DataFrame
    bad: np.ndarray
    raw: pl.DataFrame | None

    @property
    def size(self) -> int:
        return len(self.bad)


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

    def counts(self, field: str) -> pl.DataFrame:
        """The field's distinct values and their counts, ``value`` and ``count`` (Int64), in no order."""
        parts = self.parts[field]
        if not parts:
            return pl.DataFrame(schema={"value": pl.Null, "count": pl.Int64})
        return self._merge(parts) if len(parts) > 1 else parts[0]

    def kept(self, field: str, min_count: int) -> pl.Series:
        """The field's values seen at least ``min_count`` times, in ascending order. [V]"""
        return self.counts(field).filter(pl.col("count") >= min_count)["value"].sort()


# --------------------------------------------------------------------------------------------- encodings


@dataclass
class Encoded:
    """One output field: its schema, the expression of its ids (Int32) and, for numeric fields, of its
    values (Float32), both over the token frame; plus facts for ``feature_map.extra``."""

    field: Field
    ids: pl.Expr
    values: pl.Expr | None = None
    facts: dict[str, Any] = dataclass_field(default_factory=dict)


@dataclass(frozen=True)
class Categorical:
    """Tokens seen >= ``min_count`` times in train -> ids 1..V in token order; others OOV (V + 1), and so is
    ``oov_token`` however often it is seen. ``facts["kept"]``: the kept tokens, ascending. [V]"""

    min_count: int
    oov_token: str | None = None

    def encode(self, name: str, counts: pl.DataFrame) -> Encoded:
        kept = counts.filter(pl.col("count") >= self.min_count)["value"]
        if self.oov_token is not None:
            kept = kept.filter(kept != self.oov_token)
        kept = kept.sort()
        oov = len(kept) + 1
        if kept.dtype == pl.String:  # an Enum cast is a ~2x faster lookup than replace_strict for strings
            lookup = pl.col(name).cast(pl.Enum(kept), strict=False).to_physical().cast(pl.Int32) + 1
        else:
            lookup = pl.col(name).replace_strict(
                kept, pl.int_range(1, oov, dtype=pl.Int32, eager=True), default=None, return_dtype=pl.Int32
            )
        ids = pl.when(pl.col(name).is_null()).then(pl.lit(0, pl.Int32)).otherwise(lookup.fill_null(oov))
        return Encoded(Field(name, oov + 1), ids.alias(name), facts={"kept": kept})


@dataclass(frozen=True)
class EqualFrequency:
    """Integer values -> buckets of >= ``min_rows`` train rows each, cut in ascending value order."""

    min_rows: int

    def thresholds(self, counts: pl.DataFrame) -> np.ndarray:
        """The largest value of every bucket but the last (which takes the remainder), ascending. [B - 1]"""
        counts = counts.sort("value")
        values, cum = counts["value"].to_numpy(), np.cumsum(counts["count"].to_numpy())
        ends, done = [], 0
        while True:  # one step per bucket: the first value where the bucket reaches min_rows rows
            j = int(np.searchsorted(cum, done + self.min_rows))
            if j >= len(cum) - 1:  # the last value never closes a bucket: it ends the last one
                break
            ends.append(j)
            done = cum[j]
        return values[ends] if ends else np.empty(0, dtype=np.int64)

    def encode(self, name: str, counts: pl.DataFrame) -> Encoded:
        ends = self.thresholds(counts)
        bucket = pl.lit(pl.Series(ends, dtype=pl.Int64)).search_sorted(pl.col(name), side="left")
        ids = pl.when(pl.col(name).is_null()).then(pl.lit(0, pl.Int32)).otherwise(bucket.cast(pl.Int32) + 1)
        return Encoded(Field(name, len(ends) + 3), ids.alias(name), facts={"buckets": len(ends) + 1})


@dataclass(frozen=True)
class MinMax:
    """A numeric field: id 1 (0 when missing), value ``(x - min) / (max - min)`` of train, clipped."""

    def encode(self, name: str, counts: pl.DataFrame) -> Encoded:
        lo, hi = counts["value"].min(), counts["value"].max()
        ids = pl.col(name).is_not_null().cast(pl.Int32).alias(name)
        return Encoded(Field(name, 3, kind="numeric"), ids, minmax_scaled(name, lo, hi), {"min": lo, "max": hi})


def minmax_scaled(field: str, lo: int | None, hi: int | None) -> pl.Expr:
    """``(x - lo) / (hi - lo)`` clipped to [0, 1]; missing -> 0.0. float32 [n]"""
    if lo is None:  # never present in the train split: nothing to scale by
        return pl.lit(0.0, pl.Float32).alias(field)
    x = ((pl.col(field).cast(pl.Float64) - lo) / max(hi - lo, 1)).clip(0.0, 1.0)
    return x.fill_null(0.0).cast(pl.Float32).alias(field)


Encoding = Categorical | EqualFrequency | MinMax


@dataclass(frozen=True)
class FieldSpec:
    """An output field: its ``token`` (an expression over the parsed frame; null = missing) and how its
    train tokens become ids."""

    name: str
    token: pl.Expr
    encoding: Encoding


# --------------------------------------------------------------------------------------------- splits


@dataclass
class SplitPlan:
    """``pos[l]``: where line ``l`` (0-based over the concatenated files) lands; ``bounds`` [4]: the first
    position of train, valid, test and the end."""

    pos: np.ndarray
    bounds: np.ndarray


def seeded_positions(n: int, seed: int) -> np.ndarray:
    """The position of each of ``n`` lines in ``default_rng(seed).permutation(n)`` (uint32 while it fits:
    the same permutation at half the memory). [n]"""
    dtype = np.uint32 if n < 2**32 else np.int64
    pos = np.empty(n, dtype=dtype)
    pos[np.random.default_rng(seed).permutation(np.arange(n, dtype=dtype))] = np.arange(n, dtype=dtype)
    return pos


def check_split(split: Sequence[float], valid_fraction_of_train: float | None, how: str) -> list[float]:
    """Validate ``split``: ``[train, valid, test]`` with ``valid_fraction_of_train`` null, or
    ``[train_and_valid, test]`` with ``0 < valid_fraction_of_train < 1``; ``how`` ends the messages."""
    split = [float(s) for s in split]
    if any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"data.source.split = {split} must be non-negative ratios summing to 1")
    if len(split) == 3 and valid_fraction_of_train is not None:
        raise ValueError(f"data.source.split = [train, valid, test] takes valid_fraction_of_train = null{how}")
    if len(split) == 2 and (valid_fraction_of_train is None or not 0 < valid_fraction_of_train < 1):
        raise ValueError(f"data.source.split = [train_and_valid, test] takes 0 < valid_fraction_of_train < 1{how}")
    if len(split) not in (2, 3):
        raise ValueError(f"data.source.split = {split} must be [train, valid, test] or [train_and_valid, test]")
    return split


def random_split(n: int, split: Sequence[float], valid_fraction_of_train: float | None, seed: int) -> SplitPlan:
    """A seeded random split of ``n`` lines: ``[train, valid, test]`` ratios, or ``[train_and_valid, test]``
    with valid = ``valid_fraction_of_train`` of the first part."""
    if len(split) == 3:
        n_train, n_valid = round(split[0] * n), round(split[1] * n)
    else:
        n_train_valid = round(split[0] * n)
        n_valid = round(valid_fraction_of_train * n_train_valid)
        n_train = n_train_valid - n_valid
    return SplitPlan(seeded_positions(n, seed), np.array([0, n_train, n_train + n_valid, n], dtype=np.int64))


def line_uniforms(seed: int, first: int, n: int) -> np.ndarray:
    """A uniform draw in [0, 1) for each of lines ``first .. first + n - 1``: a hash (splitmix64) of
    ``(seed, line)``, so the same whatever the chunking. float64 [n]"""
    x = np.arange(first, first + n, dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


# --------------------------------------------------------------------------------------------- placement


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
                        raise AssertionError(f"{split} rows {lo}..{lo + n}: {len(rec)} rows for {n} positions")
                    for kind, (dtype, shape) in self.kinds.items():
                        block = np.empty((n, *shape), dtype=dtype)
                        block[at] = rec[kind]
                        files[kind].write(block.tobytes())  # buckets come in order: a sequential write
                    path.unlink(missing_ok=True)
            finally:
                for fh in files.values():
                    fh.close()
        self.spill.rmdir()


# --------------------------------------------------------------------------------------------- the build


@dataclass
class Pipeline:
    """Everything ``build`` needs from a reader and its recipe.

    ``where`` names the input in messages (a file, or a folder of files). ``parse(data)`` turns a chunk
    of raw lines into a ``ParsedChunk``: one parser for every file, or a list of one per file (in ``files``
    order) where the files differ (iPinYou: each file's header, each folder's featindex).
    ``explain(chunk, row)`` says why a bad row is bad, as the end of
    ``"<file> line <k>" + explain(...)``, e.g. ``", column I5: 'abc' is not an integer"``. ``keep(line,
    chunk)``, when set, marks the good lines to keep (bool [n]; ``line`` is the global index of the
    chunk's first line): a recipe's sampling, which must not depend on the chunking.
    """

    where: str
    files: list[TextFile]
    parse: Callable[[bytes], ParsedChunk] | Sequence[Callable[[bytes], ParsedChunk]]
    explain: Callable[[ParsedChunk, int], str]
    fields: list[FieldSpec]
    split: SplitPlan
    on_bad_line: str
    chunk_rows: int
    keep: Callable[[int, ParsedChunk], np.ndarray] | None = None

    @property
    def num_lines(self) -> int:
        return sum(f.lines for f in self.files)


@dataclass
class Built:
    """What ``build`` wrote: the fields, split sizes, the per-field ``Encoded`` and line accounting;
    ``positives``: the labels' sum per split; ``file_rows`` / ``file_positives``: rows written and their
    labels' sum per file (in ``files`` order)."""

    fields: list[Field]
    split_sizes: dict[str, int]
    has_values: bool
    encoded: dict[str, Encoded]
    lines_read: int
    bad_lines_skipped: int
    lines_dropped: int
    bad_line_examples: list[str]
    positives: dict[str, int]
    file_rows: list[int]
    file_positives: list[int]


@dataclass
class _Chunk:
    file: TextFile
    first: int  # 0-based index of the chunk's first line in its file
    line: int  # ... over the concatenated files
    parsed: ParsedChunk


@dataclass
class _TrainStats:
    counter: ValueCounter
    bad: list[np.ndarray] = dataclass_field(default_factory=list)  # global indices of malformed lines
    dropped: list[np.ndarray] = dataclass_field(default_factory=list)  # ... of good lines a recipe drops
    examples: list[str] = dataclass_field(default_factory=list)  # descriptions of the first few bad lines


def _chunks(p: Pipeline) -> Iterator[_Chunk]:
    parsers = [p.parse] * len(p.files) if callable(p.parse) else list(p.parse)
    if len(parsers) != len(p.files):
        raise AssertionError(f"{p.where}: {len(parsers)} parsers for {len(p.files)} files")
    offset = 0
    for f, parse in zip(p.files, parsers, strict=True):
        for first, n, data in line_chunks(f.path, p.chunk_rows, f.lines, f.start):
            parsed = parse(data)
            if parsed.size != n:  # the line reader must keep every line, empty ones too
                raise AssertionError(f"{f.path}: parsed {parsed.size} rows from {n} lines at line {first + 1}")
            yield _Chunk(f, first, offset + first, parsed)
        offset += f.lines


def _describe(p: Pipeline, c: _Chunk, row: int) -> str:
    return f"{c.file.path} line {c.file.line_number(c.first + row)}{p.explain(c.parsed, row)}"


def _tokens(p: Pipeline, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(spec.token.alias(spec.name) for spec in p.fields)


def _kept(p: Pipeline, c: _Chunk) -> np.ndarray:
    """Lines of the chunk that are good and that the recipe keeps. bool [n]"""
    good = ~c.parsed.bad
    return good & p.keep(c.line, c.parsed) if p.keep is not None else good


def _count_pass(p: Pipeline) -> _TrainStats:
    """Pass 2: validate every line; count the train split's tokens per field."""
    stats = _TrainStats(ValueCounter([spec.name for spec in p.fields]))
    in_train = p.split.pos < p.split.bounds[1]
    for c in _chunks(p):
        bad = c.parsed.bad
        if bad.any():
            rows = np.flatnonzero(bad)
            if p.on_bad_line == "error":
                raise ValueError(_describe(p, c, int(rows[0])))
            stats.examples += [_describe(p, c, int(r)) for r in rows[: REPORT_BAD - len(stats.examples)]]
            stats.bad.append(c.line + rows)
        kept = _kept(p, c)
        if p.keep is not None:
            stats.dropped.append(c.line + np.flatnonzero(~bad & ~kept))
        train = in_train[c.line : c.line + c.parsed.size] & kept
        stats.counter.add(_tokens(p, c.parsed.frame.filter(pl.Series(train))))
    return stats


def build(p: Pipeline, out_dir: Path) -> Built:
    """Write ``{split}_ids.npy`` int32 [N, F], ``{split}_labels.npy`` float32 [N] (and, when a field is
    numeric, ``{split}_values.npy`` float32 [N, F]) into ``out_dir``."""
    start = time.perf_counter()
    n_lines = p.num_lines
    if n_lines == 0:
        raise ValueError(f"{p.where}: no lines to read")
    if len(p.split.pos) != n_lines:
        raise AssertionError(f"{p.where}: a split plan of {len(p.split.pos)} lines for {n_lines} lines")
    stats = _count_pass(p)
    log.info("%s: %d lines validated and counted in %.1fs", p.where, n_lines, time.perf_counter() - start)

    bad = np.concatenate(stats.bad) if stats.bad else np.empty(0, dtype=np.int64)
    dropped = np.concatenate(stats.dropped) if stats.dropped else np.empty(0, dtype=np.int64)
    if len(bad):
        log.warning("%s: skipped %d malformed lines, e.g. %s", p.where, len(bad), "; ".join(stats.examples))
    if len(bad) == n_lines:
        raise ValueError(f"{p.where}: all {n_lines} lines are malformed, e.g. {stats.examples[0]}")
    # a kept line's row in its split: its position, less the split's start and the excluded (bad or
    # dropped) lines that precede it in the same split
    pos, bounds = p.split.pos, p.split.bounds
    gaps = np.sort(pos[np.concatenate([bad, dropped])].astype(np.int64))
    gaps_before = np.searchsorted(gaps, bounds)  # [4]
    sizes = {s: int(bounds[i + 1] - bounds[i] - (gaps_before[i + 1] - gaps_before[i])) for i, s in enumerate(SPLITS)}
    encoded = {spec.name: spec.encoding.encode(spec.name, stats.counter.counts(spec.name)) for spec in p.fields}
    ids = [e.ids for e in encoded.values()]
    has_values = any(e.values is not None for e in encoded.values())
    values = [e.values if e.values is not None else pl.lit(1.0, pl.Float32).alias(n) for n, e in encoded.items()]

    # pass 3: encode every chunk and send its rows to their positions
    kinds = {"ids": (np.int32, (len(p.fields),)), "labels": (np.float32, ())}
    if has_values:
        kinds["values"] = (np.float32, (len(p.fields),))
    placer = RowPlacer(out_dir, sizes, kinds, bucket_rows=p.chunk_rows)
    positives = np.zeros(len(SPLITS))
    file_ends = np.cumsum([f.lines for f in p.files])  # a chunk lies in one file: the file of its first line
    file_rows, file_positives = np.zeros(len(p.files), dtype=np.int64), np.zeros(len(p.files))
    for c in _chunks(p):
        kept = _kept(p, c)
        frame = c.parsed.frame.filter(pl.Series(kept))
        tokens = _tokens(p, frame)
        at = pos[c.line : c.line + c.parsed.size][kept].astype(np.int64)
        split = np.searchsorted(bounds[1:3], at, side="right")  # 0 train, 1 valid, 2 test [n]
        dest = at - bounds[split] - (np.searchsorted(gaps, at) - gaps_before[split])
        arrays = {"ids": tokens.select(ids).to_numpy(order="c"), "labels": frame["label"].to_numpy()}
        if has_values:
            arrays["values"] = tokens.select(values).to_numpy(order="c")
        for i, s in enumerate(SPLITS):
            rows = np.flatnonzero(split == i)
            placer.add(s, dest[rows], {kind: arr[rows] for kind, arr in arrays.items()})
        positives += np.bincount(split, weights=arrays["labels"], minlength=len(SPLITS))
        k = int(np.searchsorted(file_ends, c.line, side="right"))
        file_rows[k] += len(at)
        file_positives[k] += float(arrays["labels"].sum())
    placer.finish()
    seconds = time.perf_counter() - start
    log.info("%s: %d lines encoded in %.1fs (%.0f rows/s)", p.where, n_lines, seconds, n_lines / seconds)
    return Built(
        fields=[e.field for e in encoded.values()],
        split_sizes=sizes,
        has_values=has_values,
        encoded=encoded,
        lines_read=n_lines,
        bad_lines_skipped=len(bad),
        lines_dropped=len(dropped),
        bad_line_examples=stats.examples,
        positives={s: int(positives[i]) for i, s in enumerate(SPLITS)},
        file_rows=file_rows.tolist(),
        file_positives=[int(v) for v in file_positives],
    )
