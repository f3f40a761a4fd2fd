"""iPinYou RTB 2013, as processed by make-ipinyou-data: a streaming reader for its two formats and the
papers' recipes.

The data. iPinYou released impression, click and conversion logs of its 2013 bidding contest in three
seasons. make-ipinyou-data (github.com/wnzhang/make-ipinyou-data, Zhang et al. 2014, "Real-time bidding
benchmarking with iPinYou dataset") joins the clicks of seasons 2 and 3 onto the impressions and writes, per
advertiser folder (season 2: 1458, 3358, 3386, 3427, 3476; season 3: 2259, 2261, 2821, 2997) and merged in
``all/``, a ``train.log.txt`` and a ``test.log.txt`` (~15.4M + ~4.1M = ~19.5M rows in ``all/``; ~0.08%
clicks). Both formats below come from those files.

Formats (``format``), read from ``root`` or from each of the ``parts`` (sub-folders of ``root``):

``raw``: ``train.log.txt`` / ``test.log.txt``
    Tab-separated, one header line naming the columns: ``click weekday hour bidid timestamp logtype ipinyouid
    useragent IP region city adexchange domain url urlid slotid slotwidth slotheight slotvisibility slotformat
    slotprice creative bidprice payprice keypage advertiser usertag`` (27 columns; ``test.log.txt`` appends
    ``nclick nconversation``). Columns are found by their header name, and every row must have as many
    columns as its file's header. ``click`` is the label (0/1); ``weekday`` (0-6, Sunday = 0) and ``hour``
    ("00".."23") were derived from ``timestamp`` by make-ipinyou-data; an empty cell was written as ``null``.
``fm``: ``train.fm.txt`` / ``test.fm.txt`` + ``featindex.fm.txt`` (the FNN authors' encoding, wnzhang/deep-ctr)
    ``label idx:1 idx:1 ...`` (space-separated, exactly 16 indices, one per field) and a ``featindex.fm.txt``
    of ``field:value<TAB>index`` lines. Each index is decoded back to its (field, value) through the
    featindex of its own folder, so that this module's thresholding and splits apply, and so that folders
    with different featindexes (one per advertiser) pool by value.

The 16 fields (DynInt: "all 16 categorical features", following Zhang et al. 2014; make-ipinyou-data's
``mkyzx.py`` uses the same 16), in this order for both formats: weekday, hour, useragent, IP, region, city,
adexchange, domain, slotid, slotwidth, slotheight, slotvisibility, slotformat, slotprice, creative,
advertiser. ``usertag`` is never read (OptInter: "remove user tags to prevent leakage"; it is not among
DynInt's 16 either); neither are the ids, timestamp, url/urlid, bid/pay prices and keypage. Values are
derived from the raw columns as make-ipinyou-data's encoder does (the fm format arrives already derived):

* ``useragent``: ``<os>_<browser>``, the first of windows, ios, mac, android, linux and the first of chrome,
  sogou, maxthon, safari, firefox, theworld, opera, ie found (as a substring) in the lower-cased cell, else
  ``other``. make-ipinyou-data's logs already hold this form (e.g. ``windows_ie``), and re-deriving it
  leaves it unchanged, so logs with full user-agent strings give the same values. Never missing: an empty
  user agent is ``other_other``, as make-ipinyou-data derives it.
* ``IP``: the last octet masked, ``a.b.c.d`` -> ``a.b.c.*``. iPinYou's logs are already masked this way; the
  rule only matters for other logs.
* ``slotprice``: bucketed to ``0`` (<= 0), ``1-10``, ``11-50``, ``51-100``, ``101+``; a cell that is not an
  integer is a malformed row.
* every other field: the cell as it is (e.g. ``Na`` of slotvisibility/slotformat is iPinYou's own value).

Missing values. An empty cell and make-ipinyou-data's ``null`` (its marker of an empty cell, e.g. for
``adexchange`` or ``domain``) are missing: id 0, which is always present and never thresholded (its
embedding is learned like any other: "missing" is informative, e.g. the ad exchange is absent in whole
campaigns). In the fm format, ``field:`` and ``field:null`` are missing the same way, and ``field:other``
(the FNN encoder's bucket for values absent from its own training vocabulary; the original value is lost)
is mapped to the field's OOV id: it means what our OOV id means.

Recipes (``recipe``); both read the same 16 fields and seasons 2 + 3 (all that make-ipinyou-data builds):

``dynint`` (DynInt §4.1)
    * ``min_count`` 20: values seen fewer times in the train split -> the field's OOV id
      (``vocab_size - 1``); values first seen in valid/test are OOV too.
    * Split: random 70/10/20 (DynInt: random splits "for all the datasets"). The given train and test files
      are pooled and re-split: the files' own split is by date, which is not DynInt's protocol.
``optinter`` (OptInter §V-A)
    * Seasons 2 and 3 (OptInter: "same data schema"): point ``root`` at make-ipinyou-data's ``all/``, or at
      its top folder with ``parts`` listing the advertiser folders wanted (all nine are seasons 2 and 3).
      Season 1 logs (not built by make-ipinyou-data) lack ``advertiser`` and are refused by the header check.
    * User tags removed (never read, see above).
    * Split: 80% train + valid / 20% test, random over the pooled files, as OptInter does for Criteo and
      Avazu (it states no split for iPinYou); valid is ``valid_fraction_of_train`` of the 80% (0.1 in
      configs/data/ipinyou_optinter.yaml; not stated by the paper). ``split: given`` is the other reading
      of "follow [4]" (the files' own train/test, ~79/21 by date).
    * ``min_count``: not stated for iPinYou. OptInter Table II counts 9.4x10^5 original values for iPinYou;
      we read that as every value of the train data kept (make-ipinyou-data's featindex keeps every train
      value) and default to ``min_count: 1``, so values seen once in train keep their own id.
      ``feature_map.extra["num_values"]`` reports the kept total for comparison with 9.4x10^5.

``split: given`` (either recipe, a departure from both papers): the files' own train/test (by date); valid
is a random ``valid_fraction_of_train`` of the train files' rows. Test rows stay in file order.

Clicks are ~0.08% of rows. Nothing is down-sampled or re-weighted: the splits keep the natural click rate
(logloss values like DynInt's 0.0056 depend on it). ``feature_map.extra["clicks"]`` counts each split's.

Ids: within a field, kept values get ids 1..V in ascending (string) order of the value, V + 1 is OOV, so the
output depends on neither ``chunk_rows`` nor the order of the files' values. The train split is written in
permutation order (already shuffled). ``num_rows`` keeps only the first N rows of each file (smoke runs).

Malformed rows (raw: a column count other than the header's, a click other than 0/1, a slotprice that is not
an integer; fm: a label other than 0/1, a token that is not ``index:1``, an index missing from the featindex,
a number of indices other than 16, a field twice; both: a NUL byte) stop the build with a ``ValueError``
naming the file, the 1-based line and the column/field, unless ``on_bad_line: skip``: then they are dropped
before the split, counted (``extra["bad_lines_skipped"]``) and the first few reported. A malformed header or
featindex line always raises.

Memory and speed (vectorised with polars/numpy, no Python loop over rows): each file is read ``chunk_rows``
lines at a time and split at the tabs/spaces; each field's values are turned into integer codes through a
per-field dictionary (a polars join per chunk): a row's strings do not outlive its chunk, and each distinct
value is stored once. The codes of every row are held in memory as int32 [16, N] (N = 19.5M: ~1.25 GB) with
the labels; the split, the train counts (``np.bincount``) and the encoding of the output (a lookup table per
field) are then numpy operations, and each split is written block by block into ``.npy`` files. Peak memory
~ the codes + one chunk's frames (~3 KB a line) + the dictionaries (up to millions of distinct IP prefixes
on the full data: a few hundred MB). Measured on 1.25M synthetic rows of this layout (2 busy cores):
~125k rows/s, 0.9 GB peak RSS with ``chunk_rows`` 250,000; the full data should take a few minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrlab.data.cache import file_fingerprint
from ctrlab.data.checks import ON_BAD_LINE, REPORT_BAD, check_choice, check_positive
from ctrlab.data.schema import SPLITS, FeatureMap, Field
from ctrlab.data.tabular import count_lines, line_chunks

log = logging.getLogger(__name__)

RECIPE_VERSION = 1
RECIPES = ("dynint", "optinter")
FORMATS = ("raw", "fm")
FIELDS = [
    "weekday", "hour", "useragent", "IP", "region", "city", "adexchange", "domain", "slotid", "slotwidth",
    "slotheight", "slotvisibility", "slotformat", "slotprice", "creative", "advertiser",
]  # fmt: skip
LABEL = "click"
RAW_HEADER = [
    "click",
    "weekday",
    "hour",
    "bidid",
    "timestamp",
    "logtype",
    "ipinyouid",
    "useragent",
    "IP",
    "region",
    "city",
    "adexchange",
    "domain",
    "url",
    "urlid",
    "slotid",
    "slotwidth",
    "slotheight",
    "slotvisibility",
    "slotformat",
    "slotprice",
    "creative",
    "bidprice",
    "payprice",
    "keypage",
    "advertiser",
    "usertag",
]  # fmt: skip  (make-ipinyou-data's train.log.txt; test.log.txt adds nclick, nconversation)
FILES = {"raw": ("train.log.txt", "test.log.txt"), "fm": ("train.fm.txt", "test.fm.txt")}
FEATINDEX = "featindex.fm.txt"
MISSING_VALUES = ["", "null"]  # make-ipinyou-data writes an empty cell as "null"
FNN_OOV = "other"  # featindex.fm.txt's bucket for values outside the FNN encoder's vocabulary
OSES = ["windows", "ios", "mac", "android", "linux"]  # make-ipinyou-data's order: the first found wins
BROWSERS = ["chrome", "sogou", "maxthon", "safari", "firefox", "theworld", "opera", "ie"]
SEASON_ADVERTISERS = {2: ["1458", "3358", "3386", "3427", "3476"], 3: ["2259", "2261", "2821", "2997"]}
# per-field codes before thresholding: 0 missing, 1 the FNN encoder's "other" (always OOV), 2.. values
_MISSING, _FORCED_OOV, _FIRST = 0, 1, 2
_WRITE_ROWS = 1 << 20  # rows per block when writing a split


# --------------------------------------------------------------------------------------------- reading


def read_lines(data: bytes) -> tuple[pl.Series, np.ndarray]:
    """The lines of ``data`` as one String series (null = empty line; a CRLF's CR dropped) and the 0-based
    indices of lines that hold a NUL byte (blanked, so that the reader keeps one column per line). [n], [k]"""
    nul = np.empty(0, dtype=np.int64)
    if b"\x00" in data:
        buf = np.frombuffer(data, dtype=np.uint8)
        nul = np.unique(np.searchsorted(np.flatnonzero(buf == 10), np.flatnonzero(buf == 0)))
        data = data.replace(b"\x00", b" ")
    lines = pl.read_csv(
        data,
        separator="\x00",  # never a column separator once blanked: each line stays one string
        has_header=False,
        quote_char=None,
        schema={"line": pl.String},
        encoding="utf8-lossy",
        raise_if_empty=False,
    )["line"]
    return lines, nul


def file_rows(path: Path, chunk_rows: int, max_rows: int, header: bool) -> Iterator[tuple[int, bytes]]:
    """Yield ``(0-based file line of the chunk's first row, the rows' bytes)`` for the first ``max_rows``
    data rows of ``path``, skipping its header line when ``header``."""
    skip = int(header)
    for first, _, data in line_chunks(path, chunk_rows, max_rows + skip):
        if first == 0 and skip:
            data = data[data.index(b"\n") + 1 :]
            first = 1
            if not data:
                continue
        yield first, data


@dataclass
class Parsed:
    """One chunk: labels float32 [n], per-field codes int32 [16, n] (garbage on bad rows), bad bool [n] and
    how to describe a bad row (``describe(row) -> str``)."""

    labels: np.ndarray
    codes: np.ndarray
    bad: np.ndarray
    describe: Any


class FieldCodes:
    """A growing dictionary value -> code (>= 2) for one field; codes follow first appearance. The strings live
    here once each, not once a row."""

    def __init__(self) -> None:
        self.table = pl.DataFrame(schema={"value": pl.String, "code": pl.Int32})

    @property
    def size(self) -> int:
        return _FIRST + self.table.height

    def encode(self, values: pl.Series) -> np.ndarray:
        """Codes of ``values`` (String, null -> 0), adding the values not seen before. int32 [n]"""
        frame = values.rename("value").to_frame()
        joined = frame.join(self.table, on="value", how="left", maintain_order="left")
        new = joined.filter(pl.col("code").is_null())["value"].drop_nulls().unique(maintain_order=True)
        if len(new):
            size = self.size
            added = pl.DataFrame(
                {"value": new, "code": pl.int_range(size, size + len(new), dtype=pl.Int32, eager=True)}
            )
            self.table = pl.concat([self.table, added], rechunk=False)
            if self.table.n_chunks() > 64:  # appends pile up chunks: merge them now and then
                self.table = self.table.rechunk()
            joined = frame.join(self.table, on="value", how="left", maintain_order="left")
        return joined["code"].fill_null(_MISSING).to_numpy().astype(np.int32, copy=False)

    def values_of(self, codes: np.ndarray) -> pl.Series:
        """The values of ``codes`` (all >= 2), in that order. [k]"""
        return self.table["value"].gather(pl.Series(codes - _FIRST, dtype=pl.UInt32))


# --------------------------------------------------------------------------------------------- raw logs


@dataclass
class RawHeader:
    names: list[str]
    index: dict[str, int]  # column -> position, for click and the 16 fields

    @classmethod
    def read(cls, path: Path) -> RawHeader:
        with path.open("rb") as fh:
            first = fh.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        names = [n.strip() for n in first.split("\t")]
        for name in [LABEL, *FIELDS]:
            if name not in names:
                raise ValueError(
                    f"{path} line 1, column {name}: not in the header {names[:30]}; expected "
                    f"make-ipinyou-data's header ({', '.join(RAW_HEADER)})"
                )
        return cls(names, {name: names.index(name) for name in [LABEL, *FIELDS]})


def _missing(col: str) -> pl.Expr:
    return pl.when(~pl.col(col).is_in(MISSING_VALUES)).then(pl.col(col))


def _useragent() -> pl.Expr:
    """``<os>_<browser>`` from the lower-cased user agent, the first of each list found wins."""
    ua = pl.col("useragent").fill_null("").str.to_lowercase()
    os_, browser = pl.lit("other"), pl.lit("other")
    for name in reversed(OSES):  # built inside out: the first of the list is tested first
        os_ = pl.when(ua.str.contains(name, literal=True)).then(pl.lit(name)).otherwise(os_)
    for name in reversed(BROWSERS):
        browser = pl.when(ua.str.contains(name, literal=True)).then(pl.lit(name)).otherwise(browser)
    return pl.concat_str([os_, pl.lit("_"), browser]).alias("useragent")


def _slotprice(price: pl.Expr) -> pl.Expr:
    """make-ipinyou-data's buckets of the floor price."""
    return (
        pl.when(price > 100)
        .then(pl.lit("101+"))
        .when(price > 50)
        .then(pl.lit("51-100"))
        .when(price > 10)
        .then(pl.lit("11-50"))
        .when(price > 0)
        .then(pl.lit("1-10"))
        .when(price.is_not_null())
        .then(pl.lit("0"))
        .alias("slotprice")
    )


def parse_raw(data: bytes, header: RawHeader, codes: dict[str, FieldCodes], where: Any) -> Parsed:
    """Split raw log lines into the 16 derived fields, flag malformed lines, encode the good ones."""
    lines, nul = read_lines(data)
    pieces = lines.str.split("\t")
    raw = pl.DataFrame(
        {
            "_ncols": pieces.list.len().fill_null(0),
            **{c: pieces.list.get(j, null_on_oob=True) for c, j in header.index.items()},
        }
    )
    price = _missing("slotprice").str.to_integer(strict=False)
    checks = raw.select(
        bad=(
            (pl.col("_ncols") != len(header.names))
            | ~pl.col(LABEL).is_in(["0", "1"])
            | (price.is_null() & ~pl.col("slotprice").is_in(MISSING_VALUES))
        ).fill_null(True)
    )
    bad = checks["bad"].to_numpy().copy()
    bad[nul] = True
    good = raw.filter(pl.Series(~bad))
    tokens = good.select(
        *[_missing(c).alias(c) for c in FIELDS[:2]],
        _useragent(),
        _missing("IP").str.replace(r"^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$", "${1}.*").alias("IP"),
        *[_missing(c).alias(c) for c in FIELDS[4:13]],
        _slotprice(price),
        *[_missing(c).alias(c) for c in FIELDS[14:]],
    )
    out = np.zeros((len(FIELDS), len(bad)), dtype=np.int32)
    for j, f in enumerate(FIELDS):
        out[j, ~bad] = codes[f].encode(tokens[f])
    labels = np.zeros(len(bad), dtype=np.float32)
    labels[~bad] = (good[LABEL] == "1").cast(pl.Float32).to_numpy()

    def describe(row: int) -> str:
        if row in set(nul.tolist()):
            return f"{where(row)}: contains a NUL byte"
        cells = raw.row(row, named=True)
        n, expected = cells["_ncols"], len(header.names)
        if n == 0:
            return f"{where(row)}, column {LABEL}: empty line, expected {expected} tab-separated columns"
        if n != expected:
            column = header.names[n] if n < expected else str(expected + 1)
            return f"{where(row)}, column {column}: {n} tab-separated columns, expected {expected} (the header's)"
        if cells[LABEL] not in ("0", "1"):
            return f"{where(row)}, column {LABEL}: {cells[LABEL]!r} is not 0 or 1"
        return f"{where(row)}, column slotprice: {cells['slotprice']!r} is not an integer"

    return Parsed(labels, out, bad, describe)


# --------------------------------------------------------------------------------------------- fm format


@dataclass
class FeatIndex:
    """One ``featindex.fm.txt`` decoded: for each index, its field (-1: no such index) and value code."""

    path: Path
    field: np.ndarray  # int8 [max index + 1]
    code: np.ndarray  # int32 [max index + 1]

    @property
    def size(self) -> int:
        return len(self.field)

    @classmethod
    def read(cls, path: Path, codes: dict[str, FieldCodes]) -> FeatIndex:
        """Parse ``field:value<TAB>index`` lines; a malformed line raises naming its line and field."""
        lines, nul = read_lines(path.read_bytes())
        pieces = lines.str.split("\t")
        feature = pieces.list.get(0, null_on_oob=True).str.splitn(":", 2).struct.unnest()
        frame = pl.DataFrame(
            {
                "_ncols": pieces.list.len().fill_null(0),
                "field": feature["field_0"],
                "value": feature["field_1"],
                "index_text": pieces.list.get(1, null_on_oob=True),
            }
        ).with_columns(index=pl.col("index_text").str.to_integer(strict=False))
        ok = (
            (pl.col("_ncols") == 2)
            & pl.col("value").is_not_null()
            & pl.col("field").is_in(FIELDS)
            & (pl.col("index") >= 0)
        ).fill_null(False)
        flags = frame.select(ok=ok, dup=pl.col("index").is_duplicated())
        bad = ~flags["ok"].to_numpy() | flags["dup"].to_numpy()
        bad[nul] = True
        if bad.any():
            raise ValueError(_describe_featindex(path, frame, int(np.flatnonzero(bad)[0]), nul))
        if frame.height == 0:
            raise ValueError(f"{path}: empty featindex, expected field:value<TAB>index lines")
        size = int(frame["index"].max()) + 1
        field = np.full(size, -1, dtype=np.int8)
        code = np.zeros(size, dtype=np.int32)
        for j, f in enumerate(FIELDS):  # once per field, not per row
            part = frame.filter(pl.col("field") == f)
            idx = part["index"].to_numpy()
            field[idx] = j
            value = part.select(pl.when(~pl.col("value").is_in([*MISSING_VALUES, FNN_OOV])).then(pl.col("value")))
            code[idx] = codes[f].encode(value.to_series())
            code[idx[(part["value"] == FNN_OOV).to_numpy()]] = _FORCED_OOV
        return cls(path, field, code)


def _describe_featindex(path: Path, frame: pl.DataFrame, row: int, nul: np.ndarray) -> str:
    where = f"{path} line {row + 1}"
    if row in set(nul.tolist()):
        return f"{where}: contains a NUL byte"
    cells = frame.row(row, named=True)
    if cells["_ncols"] != 2 or cells["value"] is None:
        return f"{where}, field ?: expected 'field:value<TAB>index' (is this {FEATINDEX}?)"
    if cells["field"] not in FIELDS:
        return f"{where}, field {cells['field']}: not one of the 16 fields {FIELDS}"
    if cells["index"] is None or cells["index"] < 0:
        return f"{where}, field {cells['field']}: index {cells['index_text']!r} is not a non-negative integer"
    lines = (frame.with_row_index("_row").filter(pl.col("index") == cells["index"])["_row"] + 1).to_list()
    return f"{where}, field {cells['field']}: index {cells['index']} is on lines {lines[0]} and {lines[1]}"


def parse_fm(data: bytes, index: FeatIndex, where: Any) -> Parsed:
    """Decode ``label idx:1 ...`` lines to per-field codes through ``index``; flag malformed lines."""
    lines, nul = read_lines(data)
    tokens = lines.str.split(" ")
    n_tokens = tokens.list.len().fill_null(0).to_numpy()
    label = tokens.list.get(0, null_on_oob=True)
    cells = pl.DataFrame({f"t{j}": tokens.list.get(j + 1, null_on_oob=True) for j in range(len(FIELDS))})
    idx = (
        cells.select(
            pl.when(pl.col(c).str.ends_with(":1")).then(pl.col(c).str.strip_suffix(":1").str.to_integer(strict=False))
            for c in cells.columns
        )
        .fill_null(-1)
        .to_numpy()
    )  # [n, 16]
    known = (idx >= 0) & (idx < index.size)
    idx = np.where(known, idx, 0)
    field = np.where(known, index.field[idx], -1)
    known &= field >= 0
    one_per_field = (np.sort(field, axis=1) == np.arange(len(FIELDS))).all(axis=1)
    bad = (n_tokens != len(FIELDS) + 1) | ~label.is_in(["0", "1"]).fill_null(False).to_numpy()
    bad |= ~known.all(axis=1) | ~one_per_field
    bad[nul] = True
    good = np.flatnonzero(~bad)
    out = np.zeros((len(FIELDS), len(bad)), dtype=np.int32)
    out[field[good], good[:, None]] = index.code[idx[good]]  # each good row has each field once
    labels = (label == "1").fill_null(False).cast(pl.Float32).to_numpy()

    def describe(row: int) -> str:
        if row in set(nul.tolist()):
            return f"{where(row)}: contains a NUL byte"
        line = lines[row]
        if not line:
            return f"{where(row)}, field label: empty line, expected 'label idx:1 ...' with 16 indices"
        toks = line.split(" ")
        if toks[0] not in ("0", "1"):
            return f"{where(row)}, field label: {toks[0]!r} is not 0 or 1"
        seen: dict[str, list[int]] = {}
        for k, tok in enumerate(toks[1:], start=1):
            i = tok[:-2] if tok.endswith(":1") else ""
            if not i.isdigit():
                return f"{where(row)}, field ? (token {k}): {tok!r} is not 'index:1'"
            if int(i) >= index.size or index.field[int(i)] < 0:
                return f"{where(row)}, field ? (token {k}): index {int(i)} is not in {index.path}"
            seen.setdefault(FIELDS[index.field[int(i)]], []).append(int(i))
        twice = [f for f in FIELDS if len(seen.get(f, [])) > 1]
        if twice:
            return f"{where(row)}, field {twice[0]}: appears twice (indices {seen[twice[0]]})"
        lacking = [f for f in FIELDS if f not in seen]
        return (
            f"{where(row)}, field {lacking[0]}: no index for it ({len(toks) - 1} indices, expected 16, one per field)"
        )

    return Parsed(labels, out, bad, describe)


# --------------------------------------------------------------------------------------------- source


@dataclass
class _Read:
    """Every row of every file: codes int32 [16, N], labels float32 [N], bad bool [N], in_test bool [N]
    (from a test file), and per-file facts."""

    codes: np.ndarray
    labels: np.ndarray
    bad: np.ndarray
    in_test: np.ndarray
    files: list[dict[str, Any]]
    examples: list[str]
    field_codes: dict[str, FieldCodes]


class IPinYouSource:
    """iPinYou (make-ipinyou-data) in the ``raw`` or ``fm`` format with one of two recipes; see the module
    docstring. All arguments come from ``configs/data/ipinyou.yaml`` (``ipinyou_optinter.yaml`` for the
    other recipe). ``split`` is ``[train, valid, test]``, ``[train_and_valid, test]`` (with
    ``valid_fraction_of_train``) or ``given``; ``chunk_rows`` bounds memory and does not change the output.
    """

    def __init__(
        self,
        name: str,
        root: str,
        format: str,  # noqa: A002 - the config key
        parts: Sequence[str | int] | None,
        recipe: str,
        num_rows: int | None,
        min_count: int,
        split: Sequence[float] | str,
        valid_fraction_of_train: float | None,
        on_bad_line: str,
        chunk_rows: int,
        seed: int,
    ) -> None:
        check_choice("recipe", recipe, RECIPES)
        check_choice("format", format, FORMATS)
        check_choice("on_bad_line", on_bad_line, ON_BAD_LINE)
        if isinstance(split, str):
            check_choice("split", split, ["given"])
            ratios = None
        else:
            ratios = [float(s) for s in split]
            if any(s < 0 for s in ratios) or abs(sum(ratios) - 1.0) > 1e-6 or len(ratios) not in (2, 3):
                raise ValueError(
                    f"data.source.split = {ratios} must be [train, valid, test] or [train_and_valid, test] "
                    "(non-negative, summing to 1) or 'given'"
                )
        needs_fraction = ratios is None or len(ratios) == 2
        if needs_fraction and (valid_fraction_of_train is None or not 0 < valid_fraction_of_train < 1):
            raise ValueError(
                f"data.source.split = {split!r} needs 0 < data.source.valid_fraction_of_train < 1 "
                "(the share of the train rows that becomes the validation split)"
            )
        if not needs_fraction and valid_fraction_of_train is not None:
            raise ValueError(
                "data.source.split = [train, valid, test] takes data.source.valid_fraction_of_train = null"
            )
        check_positive("num_rows", num_rows, nullable=True)
        check_positive("chunk_rows", chunk_rows)
        if min_count < 1:
            raise ValueError(f"data.source.min_count = {min_count} must be at least 1")
        if str(root) in ("", "???"):
            raise ValueError(
                "data.source.root is not set: IPINYOU=/path/to/folder or data.source.root=... (the folder "
                "holding train.log.txt + test.log.txt, or train.fm.txt + test.fm.txt + featindex.fm.txt)"
            )
        if parts is not None and (isinstance(parts, str) or len(parts) == 0):
            raise ValueError(f"data.source.parts = {parts!r} must be null or a non-empty list of sub-folders")
        self.name = name
        self.root = Path(root)
        self.parts = None if parts is None else [str(p) for p in parts]
        self.cfg: dict[str, Any] = {
            "recipe": recipe,
            "format": format,
            "parts": self.parts,
            "num_rows": None if num_rows is None else int(num_rows),
            "min_count": int(min_count),
            "split": "given" if ratios is None else ratios,
            "valid_fraction_of_train": None if valid_fraction_of_train is None else float(valid_fraction_of_train),
            "on_bad_line": on_bad_line,
            "seed": int(seed),
        }
        self.chunk_rows = int(chunk_rows)

    # ----------------------------------------------------------------------------------------- files

    def folders(self) -> list[Path]:
        return [self.root] if self.parts is None else [self.root / p for p in self.parts]

    def files(self) -> list[tuple[Path, bool, Path | None]]:
        """``(row file, is a test file, its featindex or None)`` in reading order; raises when one is
        missing."""
        fmt = self.cfg["format"]
        out = []
        for folder in self.folders():
            featindex = folder / FEATINDEX if fmt == "fm" else None
            for name in FILES[fmt]:
                out.append((folder / name, name.startswith("test"), featindex))
            for path in [*(p for p, _, _ in out[-2:]), *([featindex] if featindex else [])]:
                if not path.is_file():
                    expected = " + ".join([*FILES[fmt], *([FEATINDEX] if featindex else [])])
                    raise FileNotFoundError(
                        f"{path} is not a file: data.source.root (+ parts) must name folders holding {expected} "
                        f"(format {fmt}); IPINYOU=... or data.source.root=..."
                    )
        return out

    def cache_key(self) -> dict[str, Any]:
        files = self.files()
        paths = [p for p, _, _ in files] + sorted({f for _, _, f in files if f is not None})
        return {
            "source": "ipinyou",
            "recipe_version": RECIPE_VERSION,
            **self.cfg,
            "files": [file_fingerprint(p) for p in paths],
        }

    # ----------------------------------------------------------------------------------------- reading

    def _read(self) -> _Read:
        """Parse every file once: validate each row and turn it into per-field codes."""
        c = self.cfg
        raw = c["format"] == "raw"
        files = self.files()
        limit = c["num_rows"]
        counts = []
        for path, _, _ in files:
            n = count_lines(path, None if limit is None else limit + raw) - raw
            counts.append(max(n, 0))
        total = sum(counts)
        codes = np.zeros((len(FIELDS), total), dtype=np.int32)
        labels = np.zeros(total, dtype=np.float32)
        bad = np.zeros(total, dtype=bool)
        in_test = np.zeros(total, dtype=bool)
        field_codes = {f: FieldCodes() for f in FIELDS}
        indexes: dict[Path, FeatIndex] = {}
        facts, examples = [], []
        at = 0
        for (path, is_test, featindex), n in zip(files, counts, strict=True):
            if raw:
                header = RawHeader.read(path)
            elif featindex not in indexes:
                indexes[featindex] = FeatIndex.read(featindex, field_codes)
            done = 0
            for first, data in file_rows(path, self.chunk_rows, n, header=raw):

                def where(row: int, first: int = first, path: Path = path) -> str:
                    return f"{path} line {first + row + 1}"

                if raw:
                    chunk = parse_raw(data, header, field_codes, where)
                else:
                    chunk = parse_fm(data, indexes[featindex], where)
                k = len(chunk.bad)
                rows = slice(at + done, at + done + k)
                codes[:, rows], labels[rows], bad[rows] = chunk.codes, chunk.labels, chunk.bad
                if chunk.bad.any():
                    first_bad = np.flatnonzero(chunk.bad)
                    if c["on_bad_line"] == "error":
                        raise ValueError(chunk.describe(int(first_bad[0])))
                    examples += [chunk.describe(int(r)) for r in first_bad[: REPORT_BAD - len(examples)]]
                done += k
            if done != n:  # the line reader must keep every line, empty ones too
                raise AssertionError(f"{path}: parsed {done} rows, counted {n}")
            in_test[at : at + n] = is_test
            ok = ~bad[at : at + n]
            facts.append({"file": str(path), "rows": int(ok.sum()), "clicks": int(labels[at : at + n][ok].sum())})
            at += n
        return _Read(codes, labels, bad, in_test, facts, examples, field_codes)

    # ----------------------------------------------------------------------------------------- split

    def _split_rows(self, read: _Read) -> dict[str, np.ndarray]:
        """Row indices (into ``read``) of each split, in output order. Bad rows are left out first."""
        c = self.cfg
        rng = np.random.default_rng(c["seed"])
        good = np.flatnonzero(~read.bad)
        if c["split"] == "given":
            train_file = good[~read.in_test[good]]
            train_file = train_file[rng.permutation(len(train_file))]
            n_valid = round(c["valid_fraction_of_train"] * len(train_file))
            n_train = len(train_file) - n_valid
            return {
                "train": train_file[:n_train],
                "valid": train_file[n_train:],
                "test": good[read.in_test[good]],  # file order
            }
        n = len(good)
        rows = good[rng.permutation(n)]
        ratios = c["split"]
        if len(ratios) == 3:
            n_train, n_valid = round(ratios[0] * n), round(ratios[1] * n)
        else:
            n_train_valid = round(ratios[0] * n)
            n_valid = round(c["valid_fraction_of_train"] * n_train_valid)
            n_train = n_train_valid - n_valid
        return {
            "train": rows[:n_train],
            "valid": rows[n_train : n_train + n_valid],
            "test": rows[n_train + n_valid :],
        }

    # ----------------------------------------------------------------------------------------- encoding

    def _lookups(self, read: _Read, train: np.ndarray) -> tuple[list[Field], list[np.ndarray], list[pl.Series]]:
        """Per field: the Field, a code -> local id table (0 missing, 1..V kept values in value order, V + 1
        OOV) and the kept values."""
        fields, tables, kept_values = [], [], []
        for j, f in enumerate(FIELDS):
            codes = read.field_codes[f]
            counts = np.bincount(read.codes[j, train], minlength=codes.size)
            kept = np.flatnonzero(counts >= self.cfg["min_count"])
            kept = kept[kept >= _FIRST]
            values = codes.values_of(kept)
            order = values.arg_sort().to_numpy()  # ids follow the value order, not the reading order
            oov = len(kept) + 1
            table = np.full(codes.size, oov, dtype=np.int32)
            table[_MISSING] = 0
            table[kept[order]] = np.arange(1, oov, dtype=np.int32)
            fields.append(Field(f, oov + 1))
            tables.append(table)
            kept_values.append(values.gather(pl.Series(order, dtype=pl.UInt32)))
        return fields, tables, kept_values

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids.npy`` int32 [N, 16] and ``{split}_labels.npy`` float32 [N] into ``out_dir``."""
        c = self.cfg
        start = time.perf_counter()
        read = self._read()
        n_lines, n_bad = len(read.bad), int(read.bad.sum())
        if n_lines == 0:
            raise ValueError(f"{self.root}: no rows to read in {[str(p) for p, _, _ in self.files()]}")
        if n_bad == n_lines:
            raise ValueError(f"{self.root}: all {n_lines} rows are malformed, e.g. {read.examples[0]}")
        if n_bad:
            log.warning("%s: skipped %d malformed lines, e.g. %s", self.root, n_bad, "; ".join(read.examples))
        log.info("%s: %d rows read and encoded in %.1fs", self.root, n_lines, time.perf_counter() - start)
        rows = self._split_rows(read)
        fields, tables, kept_values = self._lookups(read, rows["train"])
        for split in SPLITS:
            r = rows[split]
            ids = np.lib.format.open_memmap(out_dir / f"{split}_ids.npy", "w+", np.int32, (len(r), len(FIELDS)))
            for lo in range(0, len(r), _WRITE_ROWS):
                block = r[lo : lo + _WRITE_ROWS]
                ids[lo : lo + len(block)] = np.stack([t[read.codes[j, block]] for j, t in enumerate(tables)], axis=1)
            ids.flush()
            del ids
            np.save(out_dir / f"{split}_labels.npy", read.labels[r])
        seconds = time.perf_counter() - start
        log.info("%s: %s cache built in %.1fs (%.0f rows/s)", self.root, c["recipe"], seconds, n_lines / seconds)

        sizes = {s: len(rows[s]) for s in SPLITS}
        clicks = {s: int(read.labels[rows[s]].sum()) for s in SPLITS}
        where = self.root.name + ("" if self.parts is None else f"/{{{','.join(self.parts)}}}")
        which = f"first {c['num_rows']:,} rows of each file" if c["num_rows"] is not None else "all rows"
        split = (
            "given train/test" if c["split"] == "given" else "random " + "/".join(f"{100 * s:g}" for s in c["split"])
        )
        skipped = f", {n_bad:,} malformed lines skipped" if n_bad else ""
        return FeatureMap(
            dataset=self.name,
            fields=fields,
            split_sizes=sizes,
            description=(
                f"iPinYou {c['format']} {where} ({which}: {sum(sizes.values()):,} rows), "
                f"{c['recipe']} recipe, {split} split{skipped}"
            ),
            extra={
                "recipe": c["recipe"],
                "format": c["format"],
                "files": read.files,
                "lines_read": n_lines,
                "bad_lines_skipped": n_bad,
                "bad_line_examples": read.examples,
                "clicks": clicks,
                "click_rate": sum(clicks.values()) / max(sum(sizes.values()), 1),
                "num_values": int(sum(f.vocab_size - 2 for f in fields)),
                "advertisers": kept_values[FIELDS.index("advertiser")].to_list(),
            },
        )
