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

Splits are drawn over the lines of the files (pooled in reading order: per folder ``train`` then ``test``)
before any line is parsed: a random split is a seeded permutation of all lines cut at the ratios
(``ctrlab.data.tabular.random_split``); ``given`` permutes the train files' lines and keeps the test
files' lines in order (``given_split``). So a line's split and its place in it depend only on the seed,
the number of lines and the line's number in the pooled files, never on which other lines are malformed:
a skipped line leaves a gap, it moves no other line.

The config: ``IPinYouSource`` is a frozen dataclass whose fields are the keys of ``configs/data/ipinyou*.yaml``
with their types (checked by ``ctrlab.run_config`` before any work); ``__post_init__`` checks their values; the
cache key is the fields (``ctrlab.data.checks.recipe_key``) less ``chunk_rows``, with ``root`` replaced by the
fingerprints of the files read.

Clicks are ~0.08% of rows. Nothing is down-sampled or re-weighted: the splits keep the natural click rate
(logloss values like DynInt's 0.0056 depend on it). ``feature_map.extra["clicks"]`` counts each split's.

Ids: within a field, kept values get ids 1..V in ascending (string) order of the value, V + 1 is OOV, so the
output depends on neither ``chunk_rows`` nor the order of the files' values. The train split is written in
permutation order (already shuffled). ``num_rows`` keeps only the first N rows of each file (smoke runs).
The FNN encoding's ``other`` becomes the token ``FNN_OOV_TOKEN``, which no raw cell can be (it holds a NUL
byte, which makes a raw line malformed) and which the encoding never keeps.

Malformed rows (raw: a column count other than the header's, a click other than 0/1, a slotprice that is not
an integer; fm: a label other than 0/1, a token that is not ``index:1``, an index missing from the featindex,
a number of indices other than 16, a field twice; both: a NUL byte) stop the build with a ``ValueError``
naming the file, the 1-based line and the column/field, unless ``on_bad_line: skip``: then they are dropped
(after the split is drawn, see above), counted (``extra["bad_lines_skipped"]``) and the first few reported.
A malformed header or featindex line always raises.

Streaming (DESIGN §3) through ``ctrlab.data.tabular``, as Criteo and Avazu: this module supplies the two
formats' parsers (one per file: each raw file has its header, each folder its featindex), which split
``chunk_rows`` lines at a time at the tabs/spaces and derive the 16 fields' string tokens, vectorised with
polars/numpy; the pipeline counts the train split's tokens, encodes and places the rows. Memory: one
chunk's frames (~3 KB a line) + the train value counts (up to millions of distinct IP prefixes on the full
data) + 4 bytes a line for the split + the featindexes. Every line is parsed twice (count, then encode):
on 200k synthetic raw rows (2 busy cores) ~55k rows/s, where the former in-memory reader (int32 [16, N]
codes, 1.25 GB on the full 19.5M rows) did ~87k rows/s.
"""

from __future__ import annotations

import functools
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
from ctrlab.data.tabular import Categorical, FieldSpec, ParsedChunk, TextFile

RECIPE_VERSION = 2  # 2: the split is drawn over all lines, so skipped malformed lines move no other line
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
FNN_OOV_TOKEN = "\x00other"  # its token: never a raw cell's (a NUL byte makes a raw line malformed), never kept
OSES = ["windows", "ios", "mac", "android", "linux"]  # make-ipinyou-data's order: the first found wins
BROWSERS = ["chrome", "sogou", "maxthon", "safari", "firefox", "theworld", "opera", "ie"]
SEASON_ADVERTISERS = {2: ["1458", "3358", "3386", "3427", "3476"], 3: ["2259", "2261", "2821", "2997"]}


@dataclass
class Chunk(ParsedChunk):
    """A parsed chunk of either format: ``frame`` holds ``label`` and the 16 fields' tokens (String, null =
    missing); ``why(row)`` says why a bad row is bad (it knows the chunk's file: its header or featindex)."""

    why: Callable[[int], str]


def explain_bad_line(chunk: ParsedChunk, row: int) -> str:
    """Why row ``row`` is malformed, e.g. ``", column click: '2' is not 0 or 1"``."""
    assert isinstance(chunk, Chunk), "iPinYou's parsers make Chunks"
    return chunk.why(row)


# --------------------------------------------------------------------------------------------- raw logs


@dataclass
class RawHeader:
    names: list[str]
    index: dict[str, int]  # column -> position, for click and the 16 fields

    @classmethod
    def read(cls, path: Path) -> RawHeader:
        names = [n.strip() for n in tabular.first_line(path).decode("utf-8", errors="replace").split("\t")]
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


def parse_raw(data: bytes, header: RawHeader) -> Chunk:
    """Split raw log lines into ``label`` and the 16 derived fields' tokens; flag malformed lines."""
    raw, nul = tabular.split_cells(data, "\t", header.names[: max(header.index.values()) + 1])
    price = _missing("slotprice").str.to_integer(strict=False)
    bad = (
        (pl.col("_ncols") != len(header.names))
        | ~pl.col(LABEL).is_in(["0", "1"])
        | (price.is_null() & ~pl.col("slotprice").is_in(MISSING_VALUES))
    )
    bad_mask = raw.select(bad.fill_null(True)).to_series().to_numpy().copy()
    bad_mask[nul] = True
    frame = raw.select(
        (pl.col(LABEL) == "1").cast(pl.Float32).alias("label"),
        *[_missing(c).alias(c) for c in FIELDS[:2]],
        _useragent(),
        _missing("IP").str.replace(r"^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$", "${1}.*").alias("IP"),
        *[_missing(c).alias(c) for c in FIELDS[4:13]],
        _slotprice(price),
        *[_missing(c).alias(c) for c in FIELDS[14:]],
    )

    def why(row: int) -> str:
        if row in set(nul.tolist()):
            return ": contains a NUL byte"
        cells = raw.row(row, named=True)
        n, expected = cells["_ncols"], len(header.names)
        if n == 0:
            return f", column {LABEL}: empty line, expected {expected} tab-separated columns"
        if n != expected:
            column = header.names[n] if n < expected else str(expected + 1)
            return f", column {column}: {n} tab-separated columns, expected {expected} (the header's)"
        if cells[LABEL] not in ("0", "1"):
            return f", column {LABEL}: {cells[LABEL]!r} is not 0 or 1"
        return f", column slotprice: {cells['slotprice']!r} is not an integer"

    return Chunk(frame, bad_mask, raw if bad_mask.any() else None, why)


# --------------------------------------------------------------------------------------------- fm format


@dataclass
class FeatIndex:
    """One ``featindex.fm.txt`` decoded: for each index, its field (-1: no such index) and its token (null:
    missing or no such index; ``FNN_OOV_TOKEN`` for ``field:other``)."""

    path: Path
    field: np.ndarray  # int8 [max index + 1]
    token: pl.Series  # String [max index + 1]

    @property
    def size(self) -> int:
        return len(self.field)

    @classmethod
    def read(cls, path: Path) -> FeatIndex:
        """Parse ``field:value<TAB>index`` lines; a malformed line raises naming its line and field."""
        lines, nul = tabular.text_lines(path.read_bytes())
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
        idx = frame["index"].to_numpy()
        field = np.full(size, -1, dtype=np.int8)
        field[idx] = frame["field"].replace_strict(FIELDS, range(len(FIELDS)), return_dtype=pl.Int8).to_numpy()
        value = pl.col("value")
        token = frame.select(
            pl.when(value == FNN_OOV).then(pl.lit(FNN_OOV_TOKEN)).when(~value.is_in(MISSING_VALUES)).then(value)
        ).to_series()
        return cls(path, field, pl.Series(np.arange(size)).replace_strict(idx, token, default=None))


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


def parse_fm(data: bytes, index: FeatIndex) -> Chunk:
    """Decode ``label idx:1 ...`` lines through ``index`` into ``label`` and the 16 fields' tokens; flag
    malformed lines."""
    lines, nul = tabular.text_lines(data)
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
    # a good row holds each field once: its indices sorted by field are in FIELDS order (bad rows: garbage)
    by_field = np.take_along_axis(idx, np.argsort(field, axis=1, kind="stable"), axis=1)  # [n, 16]
    frame = pl.DataFrame(
        {
            "label": (label == "1").fill_null(False).cast(pl.Float32),
            **{f: index.token.gather(pl.Series(by_field[:, j], dtype=pl.UInt32)) for j, f in enumerate(FIELDS)},
        }
    )

    def why(row: int) -> str:
        if row in set(nul.tolist()):
            return ": contains a NUL byte"
        line = lines[row]
        if not line:
            return ", field label: empty line, expected 'label idx:1 ...' with 16 indices"
        toks = line.split(" ")
        if toks[0] not in ("0", "1"):
            return f", field label: {toks[0]!r} is not 0 or 1"
        seen: dict[str, list[int]] = {}
        for k, tok in enumerate(toks[1:], start=1):
            i = tok[:-2] if tok.endswith(":1") else ""
            if not i.isdigit():
                return f", field ? (token {k}): {tok!r} is not 'index:1'"
            if int(i) >= index.size or index.field[int(i)] < 0:
                return f", field ? (token {k}): index {int(i)} is not in {index.path}"
            seen.setdefault(FIELDS[index.field[int(i)]], []).append(int(i))
        twice = [f for f in FIELDS if len(seen.get(f, [])) > 1]
        if twice:
            return f", field {twice[0]}: appears twice (indices {seen[twice[0]]})"
        lacking = [f for f in FIELDS if f not in seen]
        return f", field {lacking[0]}: no index for it ({len(toks) - 1} indices, expected 16, one per field)"

    return Chunk(frame, bad, None, why)


# --------------------------------------------------------------------------------------------- source


def given_split(
    files: Sequence[TextFile], is_test: Sequence[bool], valid_fraction: float, seed: int
) -> tabular.SplitPlan:
    """The files' own split: the train files' lines (in reading order) get a seeded permutation, cut into
    train | valid (``valid_fraction`` of them); the test files' lines follow in reading order."""
    test = np.concatenate([np.full(f.lines, t, dtype=bool) for f, t in zip(files, is_test, strict=True)])
    n_train_valid = int((~test).sum())
    first = tabular.seeded_positions(n_train_valid, seed)
    pos = np.empty(len(test), dtype=first.dtype if len(test) < 2**32 else np.int64)
    pos[~test] = first
    pos[test] = np.arange(n_train_valid, len(test))
    n_valid = round(valid_fraction * n_train_valid)
    bounds = [0, n_train_valid - n_valid, n_train_valid, len(test)]
    return tabular.SplitPlan(pos, np.array(bounds, dtype=np.int64))


@dataclass(frozen=True)
class IPinYouSource:
    """iPinYou (make-ipinyou-data) in the ``raw`` or ``fm`` format with one of two recipes; see the module
    docstring. The fields are the keys of ``configs/data/ipinyou.yaml`` (``ipinyou_optinter.yaml`` for the
    other recipe). ``split`` is ``[train, valid, test]``, ``[train_and_valid, test]`` (with
    ``valid_fraction_of_train``) or ``given``; ``chunk_rows`` bounds memory and does not change the output.
    """

    name: str
    root: str = field(metadata=NOT_IN_KEY)  # in the cache key by its files' fingerprints
    format: str
    parts: Sequence[str | int] | None
    recipe: str
    num_rows: int | None
    min_count: int
    split: Sequence[float] | str
    valid_fraction_of_train: float | None
    on_bad_line: str
    chunk_rows: int = field(metadata=NOT_IN_KEY)
    seed: int

    def __post_init__(self) -> None:
        check_choice("recipe", self.recipe, RECIPES)
        check_choice("format", self.format, FORMATS)
        check_choice("on_bad_line", self.on_bad_line, ON_BAD_LINE)
        split, fraction = self.split, self.valid_fraction_of_train
        if isinstance(split, str):
            check_choice("split", split, ["given"])
        else:
            ratios = [float(s) for s in split]
            if any(s < 0 for s in ratios) or abs(sum(ratios) - 1.0) > 1e-6 or len(ratios) not in (2, 3):
                raise ValueError(
                    f"data.source.split = {ratios} must be [train, valid, test] or [train_and_valid, test] "
                    "(non-negative, summing to 1) or 'given'"
                )
        needs_fraction = isinstance(split, str) or len(split) == 2
        if needs_fraction and (fraction is None or not 0 < fraction < 1):
            raise ValueError(
                f"data.source.split = {split!r} needs 0 < data.source.valid_fraction_of_train < 1 "
                "(the share of the train rows that becomes the validation split)"
            )
        if not needs_fraction and fraction is not None:
            raise ValueError(
                "data.source.split = [train, valid, test] takes data.source.valid_fraction_of_train = null"
            )
        check_positive("num_rows", self.num_rows, nullable=True)
        check_positive("chunk_rows", self.chunk_rows)
        if self.min_count < 1:
            raise ValueError(f"data.source.min_count = {self.min_count} must be at least 1")
        check_path(
            "root",
            self.root,
            "IPINYOU=/path/to/folder or data.source.root=... (the folder holding train.log.txt + test.log.txt, "
            "or train.fm.txt + test.fm.txt + featindex.fm.txt)",
        )
        if self.parts is not None and (isinstance(self.parts, str) or len(self.parts) == 0):
            raise ValueError(f"data.source.parts = {self.parts!r} must be null or a non-empty list of sub-folders")

    # ----------------------------------------------------------------------------------------- files

    def folders(self) -> list[Path]:
        """``root``, or each of its sub-folders ``parts``."""
        root = Path(self.root)
        return [root] if self.parts is None else [root / str(p) for p in self.parts]

    def files(self) -> list[tuple[Path, bool, Path | None]]:
        """``(row file, is a test file, its featindex or None)`` in reading order; raises when one is
        missing."""
        fmt = self.format
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
            **recipe_key(self),
            "files": [file_fingerprint(p) for p in paths],
        }

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids.npy`` int32 [N, 16] and ``{split}_labels.npy`` float32 [N] into ``out_dir``."""
        raw = self.format == "raw"
        files = self.files()
        texts = [tabular.open_text(path, header=raw, max_lines=self.num_rows) for path, _, _ in files]  # pass 1
        if raw:
            parsers = [functools.partial(parse_raw, header=RawHeader.read(path)) for path, _, _ in files]
        else:
            indexes = {f: FeatIndex.read(f) for f in dict.fromkeys(f for _, _, f in files)}
            parsers = [functools.partial(parse_fm, index=indexes[f]) for _, _, f in files]
        if self.split == "given":
            split = given_split(texts, [t for _, t, _ in files], self.valid_fraction_of_train, self.seed)
        else:
            n = sum(f.lines for f in texts)
            split = tabular.random_split(n, self.split, self.valid_fraction_of_train, self.seed)
        parts = "" if self.parts is None else f"/{{{','.join(str(p) for p in self.parts)}}}"
        categorical = Categorical(self.min_count, oov_token=FNN_OOV_TOKEN)
        built = tabular.build(
            tabular.Pipeline(
                where=f"{Path(self.root)}{parts}",
                files=texts,
                parse=parsers,
                explain=explain_bad_line,
                fields=[FieldSpec(f, pl.col(f), categorical) for f in FIELDS],
                split=split,
                on_bad_line=self.on_bad_line,
                chunk_rows=self.chunk_rows,
            ),
            out_dir,
        )

        sizes = built.split_sizes
        which = f"first {self.num_rows:,} rows of each file" if self.num_rows is not None else "all rows"
        how = "given train/test" if self.split == "given" else "random " + "/".join(f"{100 * s:g}" for s in self.split)
        n_bad = built.bad_lines_skipped
        skipped = f", {n_bad:,} malformed lines skipped" if n_bad else ""
        return FeatureMap(
            dataset=self.name,
            fields=built.fields,
            split_sizes=sizes,
            description=(
                f"iPinYou {self.format} {Path(self.root).name}{parts} ({which}: {sum(sizes.values()):,} rows), "
                f"{self.recipe} recipe, {how} split{skipped}"
            ),
            extra={
                "recipe": self.recipe,
                "format": self.format,
                "files": [
                    {"file": str(path), "rows": rows, "clicks": clicks}
                    for (path, _, _), rows, clicks in zip(files, built.file_rows, built.file_positives, strict=True)
                ],
                "lines_read": built.lines_read,
                "bad_lines_skipped": n_bad,
                "bad_line_examples": built.bad_line_examples,
                "clicks": built.positives,
                "click_rate": sum(built.positives.values()) / max(sum(sizes.values()), 1),
                "num_values": int(sum(f.vocab_size - 2 for f in built.fields)),
                "advertisers": built.encoded["advertiser"].facts["kept"].to_list(),
            },
        )
