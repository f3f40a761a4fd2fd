"""MovieLens-1M (GroupLens ``ml-1m.zip``) as a CTR task, with a multi-valued genres field.

Raw format: three ``::``-separated files without a header in ``root``:

* ``ratings.dat`` - ``UserID::MovieID::Rating::Timestamp`` (integers; ratings 1..5; 1,000,209 lines).
* ``users.dat`` - ``UserID::Gender::Age::Occupation::Zip-code`` (Gender ``M``/``F``; Age and Occupation are
  integer codes; the zip code is a string such as ``55455`` or ``98107-2117``; 6,040 lines).
* ``movies.dat`` - ``MovieID::Title::Genres`` with ``|``-separated genres (1 to 6 of 18) and the release
  year closing the title, e.g. ``(1995)``. Latin-1 encoded: titles have accented characters. The MovieID
  is read up to the first ``::`` and the genres after the last one, so a title is never split.

Recipe ``autoint`` (DPN appendix F, "the experiment setting of AutoInt"; AutoInt's public preprocessing,
DeepGraphLearning/RecommenderSystems ``featureRec/movielens/data/preprocess.py``):

* labels: ratings 1 and 2 -> 0, 4 and 5 -> 1; ratings of 3 are dropped (1,000,209 - 261,197 = the
  papers' 739,012 instances).
* split: random 80/10/10 of the kept ratings (``split``), drawn from ``seed``; train rows are written in
  that random order.
* fields (``fields``, any of the list below, scalar fields in the order given, then ``Genres``):
  ``UserID, MovieID, Gender, Age, Occupation, Zipcode`` categorical; ``ReleaseYear`` categorical, AutoInt's
  buckets (1919-1929 one bucket, then the 1930s..1960s by decade, then each year 1970..2000: 36 values);
  ``Timestamp`` numeric as in AutoInt: one embedding scaled by the timestamp min-max scaled to [0, 1]
  with the train split's range, clipped (AutoInt scales with the range of all rows; train-only keeps the
  test split out of preprocessing); ``Genres`` ``kind: multi``: the movie's genres (duplicates dropped),
  local ids padded with 0 to the longest list in ``movies.dat`` (6), mean-pooled by the model.
* ``min_count: 1``: neither paper thresholds; every value seen in train is kept, values seen only in
  valid/test are OOV, as for every source. A rare genre or one unseen in train is the genres field's OOV
  id inside the bag. Kept values get ids 1..V in ascending order (numbers, or strings for Gender/Zipcode).
* ``zipcode: full`` keeps the code as given (``98107-2117`` and ``98107`` differ), as AutoInt does - the
  only reading under which its 3,529 features add up; ``first_digit`` keeps the first character (the US
  zone), a coarser variant.

Which fields, and "7 fields, 3529 features": AutoInt's 7 fields are Gender, Age, Occupation, Zipcode,
Genres, ReleaseYear and Timestamp (no UserID, no MovieID): 2 + 7 + 21 + 3,439 zip codes + 18 genres +
36 release years + 1 timestamp = 3,524 features, plus 5 "Genre-NULL" padding features its code numbers
= 3,529 (its ``feature.txt``). DPN copies the 7 / 3,529 but its Table 11 lists the fields "MovieID,
zipcode, Age, Occupation, Gender, Timestamp", with the genre as context (appendix F, Table 13a): 7 fields
with MovieID in place of ReleaseYear. ``configs/data/movielens_1m.yaml`` uses DPN's Table 11 fields plus
Genres and, as the issue asks, UserID: 8 fields. Drop ``UserID`` for DPN's 7; ``fields: [Gender, Age,
Occupation, Zipcode, ReleaseYear, Timestamp, Genres]`` is AutoInt's exact set (``extra["features"]``
then counts 3,524 on the full data, AutoInt's 3,529 without its padding ids).

Malformed lines (a column count other than the file's, a non-integer id, rating, age, occupation or
timestamp, a rating outside 1..5, a gender other than M/F, a duplicate UserID/MovieID, a rating whose user
or movie is not in users.dat/movies.dat) stop the build with a ``ValueError`` naming the file, the 1-based
line and the column, unless ``on_bad_line: skip``: then they are dropped (a rating whose user or movie line
was dropped goes too), counted in ``extra["bad_lines_skipped"]`` and the first few logged. ``num_rows``
keeps the first N lines of ``ratings.dat`` (which is sorted by user: smoke runs only). Everything is read
into memory (ratings.dat is 24 MB) and parsed with vectorised polars/numpy.

The config: ``MovieLens1MSource`` is a frozen dataclass whose fields are the keys of
``configs/data/movielens_1m.yaml`` with their types (checked by ``ctrlab.run_config`` before any work);
``__post_init__`` checks their values; the cache key is the fields (``ctrlab.data.checks.recipe_key``), with
``root`` replaced by the fingerprints of the three files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrlab.data.cache import SplitArrays, file_fingerprint, save_split
from ctrlab.data.checks import NOT_IN_KEY, ON_BAD_LINE, REPORT_BAD, check_choice, check_positive, recipe_key
from ctrlab.data.schema import SPLITS, FeatureMap, Field
from ctrlab.data.synthetic import split_indices

log = logging.getLogger(__name__)

RECIPE_VERSION = 1
RECIPES = ("autoint",)
PAPER = {"instances": 739012, "fields": 7, "features": 3529}  # DPN Table 8 = AutoInt Table 1
ZIPCODE = ("full", "first_digit")
SCALAR_FIELDS = ("UserID", "MovieID", "Gender", "Age", "Occupation", "Zipcode", "ReleaseYear", "Timestamp")
BAG_FIELDS = ("Genres",)
FIELDS = SCALAR_FIELDS + BAG_FIELDS
RATINGS = ("UserID", "MovieID", "Rating", "Timestamp")
USERS = ("UserID", "Gender", "Age", "Occupation", "Zip-code")
MOVIES = ("MovieID", "Title", "Genres")


def read_lines(path: Path, max_lines: int | None = None) -> pl.Series:
    """The lines of ``path`` decoded as latin-1 (every byte is a character), without CR/LF. [n]"""
    text = path.read_bytes().decode("latin-1")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if max_lines is not None:
        lines = lines[:max_lines]
    return pl.Series("line", lines, dtype=pl.String).str.strip_chars_end("\r")


def _columns(lines: pl.Series, columns: Sequence[str]) -> pl.DataFrame:
    """The ``::``-separated columns of each line (null past its end), the column count ``_n``, the raw
    ``_line`` and its 1-based ``_lineno``."""
    parts = pl.col("_line").str.split("::")
    return (
        pl.DataFrame({"_line": lines})
        .with_row_index("_lineno", offset=1)
        .with_columns(
            parts.list.len().alias("_n"), *[parts.list.get(j, null_on_oob=True).alias(c) for j, c in enumerate(columns)]
        )
    )


def _count_problem(columns: Sequence[str]) -> pl.Expr:
    """A when-chain: why a line (``_line``, ``_n`` columns) has the wrong number of ``::``-columns."""
    want = len(columns)
    expected = f"expected {want} ({'::'.join(columns)})"
    first_missing = pl.col("_n").replace_strict(dict(enumerate(columns)), default=None, return_dtype=pl.String)
    return (
        pl.when(pl.col("_line").str.strip_chars() == "")
        .then(pl.lit(f"column {columns[0]}: empty line"))
        .when(pl.col("_n") < want)
        .then(
            pl.format(
                "column {}: missing, the line has {} '::'-separated columns, {}", first_missing, "_n", pl.lit(expected)
            )
        )
        .when(pl.col("_n") > want)
        .then(
            pl.format("column {}: the line has {} '::'-separated columns, {}", pl.lit(want + 1), "_n", pl.lit(expected))
        )
    )


def _int_problems(problem: Any, columns: Sequence[str]) -> Any:
    """Extend a when-chain with "'x' is not an integer" for each raw column ``c`` whose parse ``_c`` failed."""
    for c in columns:
        problem = problem.when(pl.col(f"_{c}").is_null()).then(
            pl.format("column {}: '{}' is not an integer", pl.lit(c), pl.col(c))
        )
    return problem


def _duplicate_problem(problem: Any, key: str, what: str) -> Any:
    """Extend a when-chain with 'already on line k' for a repeated ``_key`` (the first stays good)."""
    first = pl.col("_lineno").min().over(f"_{key}")
    return problem.when(pl.col(f"_{key}").is_not_null() & (pl.col("_lineno") != first)).then(
        pl.format("column {}: {} {} is already on line {}", pl.lit(key), pl.lit(what), pl.col(f"_{key}"), first)
    )


def parse_ratings(lines: pl.Series) -> pl.DataFrame:
    """ratings.dat -> ``_lineno``, UserID, MovieID, Rating, Timestamp (Int64), ``_problem`` (null = good)."""
    raw = _columns(lines, RATINGS).with_columns(pl.col(c).str.to_integer(strict=False).alias(f"_{c}") for c in RATINGS)
    problem = _int_problems(_count_problem(RATINGS), RATINGS)
    problem = problem.when(~pl.col("_Rating").is_between(1, 5)).then(
        pl.format("column Rating: {} is not 1..5", pl.col("_Rating"))
    )
    return raw.select(
        "_lineno", *[pl.col(f"_{c}").alias(c) for c in RATINGS], problem.otherwise(None).alias("_problem")
    )


def parse_users(lines: pl.Series) -> pl.DataFrame:
    """users.dat -> ``_lineno``, UserID, Age, Occupation (Int64), Gender, Zipcode (String, null if empty),
    ``_problem``."""
    ints = ("UserID", "Age", "Occupation")
    raw = _columns(lines, USERS).with_columns(pl.col(c).str.to_integer(strict=False).alias(f"_{c}") for c in ints)
    problem = _int_problems(_count_problem(USERS), ints)
    problem = problem.when(~pl.col("Gender").is_in(["M", "F"])).then(
        pl.format("column Gender: '{}' is not M or F", pl.col("Gender"))
    )
    problem = _duplicate_problem(problem, "UserID", "user")
    return raw.select(
        "_lineno",
        pl.col("_UserID").alias("UserID"),
        "Gender",
        pl.col("_Age").alias("Age"),
        pl.col("_Occupation").alias("Occupation"),
        pl.when(pl.col("Zip-code") != "").then(pl.col("Zip-code")).alias("Zipcode"),
        problem.otherwise(None).alias("_problem"),
    )


def release_bucket(year: pl.Expr) -> pl.Expr:
    """AutoInt's release-year buckets: up to 1929 -> 1920 (its "1919-1929"), the 1930s..1960s -> their decade,
    1970 on -> the year; null (no year in the title) stays null."""
    return (
        pl.when(year >= 1970)
        .then(year)
        .when(year >= 1930)
        .then(year // 10 * 10)
        .when(year.is_not_null())
        .then(pl.lit(1920, pl.Int64))
    )


def parse_movies(lines: pl.Series) -> pl.DataFrame:
    """movies.dat -> ``_lineno``, MovieID (Int64), Title, ReleaseYear (Int64 bucket; null without a year),
    Genres (List[String] in the file's order, duplicates and empty names dropped), ``_problem``."""
    frame = pl.DataFrame({"_line": lines}).with_row_index("_lineno", offset=1)
    # MovieID up to the first '::', Genres after the last: a title may hold anything in between
    raw = frame.with_columns(
        *[pl.col("_line").str.extract(r"^(.*?)::(.*)::(.*)$", k).alias(c) for k, c in enumerate(MOVIES, start=1)],
        (pl.col("_line").str.count_matches("::", literal=True) + 1).alias("_n"),
    ).with_columns(pl.col("MovieID").str.to_integer(strict=False).alias("_MovieID"))
    missing = pl.when(pl.col("_n") == 1).then(pl.lit("Title")).otherwise(pl.lit("Genres"))
    expected = "expected 3 (MovieID::Title::Genres)"
    problem = (
        pl.when(pl.col("_line").str.strip_chars() == "")
        .then(pl.lit("column MovieID: empty line"))
        .when(pl.col("Genres").is_null())  # fewer than two '::'
        .then(
            pl.format("column {}: missing, the line has {} '::'-separated columns, {}", missing, "_n", pl.lit(expected))
        )
    )
    problem = _duplicate_problem(_int_problems(problem, ("MovieID",)), "MovieID", "movie")
    year = pl.col("Title").str.extract(r"\((\d{4})\)\s*$", 1).str.to_integer(strict=False)
    genres = pl.col("Genres").str.split("|").list.eval(pl.element().filter(pl.element() != ""))
    return raw.select(
        "_lineno",
        pl.col("_MovieID").alias("MovieID"),
        "Title",
        release_bucket(year).alias("ReleaseYear"),
        genres.list.unique(maintain_order=True).alias("Genres"),
        problem.otherwise(None).alias("_problem"),
    )


def encode(values: pl.Series, train: np.ndarray, min_count: int) -> tuple[np.ndarray, int]:
    """Local ids of one categorical column [N]: values seen >= ``min_count`` times in the ``train`` rows ->
    1..V in ascending order, other values -> V + 1 (OOV), null -> 0. Returns (int32 [N], V + 2)."""
    counts = values.filter(pl.Series(train)).drop_nulls().value_counts(name="_count")
    kept = counts.filter(pl.col("_count") >= min_count)[values.name].sort()
    oov = len(kept) + 1
    new = pl.int_range(1, oov, dtype=pl.Int32, eager=True)
    lookup = pl.col("v").replace_strict(kept, new, default=oov, return_dtype=pl.Int32)
    ids = pl.DataFrame({"v": values}).select(pl.when(pl.col("v").is_null()).then(pl.lit(0, pl.Int32)).otherwise(lookup))
    return ids.to_series().to_numpy().astype(np.int32), oov + 1


def genre_bags(
    movies: pl.DataFrame, movie_of_row: np.ndarray, train: np.ndarray, min_count: int
) -> tuple[np.ndarray, Field]:
    """The Genres bag of every row [N, 1, L] (local ids, 0-padded) and its field. A genre is kept when it
    is on >= ``min_count`` train rows; ``movie_of_row`` [N] indexes ``movies``' rows."""
    num_movies = movies.height
    on_train = np.bincount(movie_of_row[train], minlength=num_movies)  # train rows of each movie [M]
    genres = (
        movies.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("m"), "Genres")
        .explode("Genres")
        .drop_nulls("Genres")
        .with_columns(pl.int_range(pl.len()).over("m").alias("pos"))
    )  # one row per (movie, genre)
    m = genres["m"].to_numpy()
    counts = genres.with_columns(pl.Series("w", on_train[m])).group_by("Genres").agg(pl.col("w").sum())
    kept = counts.filter((pl.col("w") >= min_count) & (pl.col("w") > 0))["Genres"].sort()
    oov = len(kept) + 1
    ids = genres.select(
        pl.col("Genres").replace_strict(kept, pl.int_range(1, oov, dtype=pl.Int32, eager=True), default=oov)
    ).to_series()
    max_len = max(1, int(movies["Genres"].list.len().max() or 0))
    per_movie = np.zeros((num_movies, max_len), dtype=np.int32)
    per_movie[m, genres["pos"].to_numpy()] = ids.to_numpy()
    return per_movie[movie_of_row][:, None, :], Field("Genres", oov + 1, kind="multi", max_len=max_len)


@dataclass(frozen=True)
class MovieLens1MSource:
    """MovieLens-1M with the ``autoint`` recipe; see the module docstring. The fields are the keys of
    ``configs/data/movielens_1m.yaml``; ``root`` is the unzipped ``ml-1m`` folder."""

    name: str
    root: str = field(metadata=NOT_IN_KEY)  # in the cache key by its files' fingerprints
    recipe: str
    fields: Sequence[str]
    zipcode: str
    split: Sequence[float]
    min_count: int
    num_rows: int | None
    on_bad_line: str
    seed: int

    def __post_init__(self) -> None:
        check_choice("recipe", self.recipe, RECIPES)
        check_choice("zipcode", self.zipcode, ZIPCODE)
        check_choice("on_bad_line", self.on_bad_line, ON_BAD_LINE)
        fields = [str(f) for f in self.fields]
        if not fields or len(set(fields)) != len(fields) or any(f not in FIELDS for f in fields):
            raise ValueError(f"data.source.fields = {fields} must be distinct names from {list(FIELDS)}")
        split = [float(s) for s in self.split]
        if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1) > 1e-6:
            raise ValueError(f"data.source.split = {split} must be [train, valid, test] ratios summing to 1")
        check_positive("min_count", self.min_count)
        check_positive("num_rows", self.num_rows, nullable=True)

    @property
    def paths(self) -> dict[str, Path]:
        """``ratings.dat``, ``users.dat`` and ``movies.dat`` in ``root``."""
        return {f: Path(self.root) / f"{f}.dat" for f in ("ratings", "users", "movies")}

    @property
    def output_fields(self) -> list[str]:
        """``fields``: the scalar ones in the order given, then the bag (the schema keeps bags last)."""
        return [f for f in self.fields if f in SCALAR_FIELDS] + [f for f in self.fields if f in BAG_FIELDS]

    def cache_key(self) -> dict[str, Any]:
        for f, p in self.paths.items():
            if not p.is_file():
                raise FileNotFoundError(
                    f"data.source.root = {self.root!r} has no {f}.dat (set data.source.root, or MOVIELENS_1M, "
                    "to the unzipped ml-1m folder)"
                )
        return {
            "source": "movielens_1m",
            "recipe_version": RECIPE_VERSION,
            **recipe_key(self),
            "files": {f: file_fingerprint(p) for f, p in self.paths.items()},
        }

    def _good(self, frame: pl.DataFrame, file: str, examples: list[str]) -> pl.DataFrame:
        """The lines of ``frame`` without a ``_problem``; the first bad one raises unless ``skip``."""
        bad = frame.filter(pl.col("_problem").is_not_null()).sort("_lineno")
        if bad.height:
            where = bad.head(REPORT_BAD).select("_lineno", "_problem").iter_rows()
            described = [f"{self.paths[file]} line {n}, {p}" for n, p in where]
            if self.on_bad_line == "error":
                raise ValueError(described[0])
            examples += described
        return frame.filter(pl.col("_problem").is_null())

    def _read(self) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
        """Every good rating (rating 3 too) with its user's and movie's columns and ``_movie``, the row of
        its movie in the returned movies frame; plus facts for ``feature_map.extra``."""
        examples: list[str] = []
        users_all = parse_users(read_lines(self.paths["users"]))
        movies_all = parse_movies(read_lines(self.paths["movies"]))
        users = self._good(users_all, "users", examples)
        movies = self._good(movies_all, "movies", examples).with_row_index("_movie")
        lines = read_lines(self.paths["ratings"], self.num_rows)
        ratings = (
            parse_ratings(lines)
            .join(users.drop("_lineno", "_problem").with_columns(pl.lit(True).alias("_user")), on="UserID", how="left")
            .join(movies.select("MovieID", "_movie", "ReleaseYear"), on="MovieID", how="left")
            .sort("_lineno")
        )
        ratings = ratings.with_columns(
            pl.when(pl.col("_problem").is_not_null())
            .then(pl.col("_problem"))
            .when(pl.col("_user").is_null())
            .then(pl.format("column UserID: user {} is not in users.dat", pl.col("UserID")))
            .when(pl.col("_movie").is_null())
            .then(pl.format("column MovieID: movie {} is not in movies.dat", pl.col("MovieID")))
            .alias("_problem")
        )
        good = self._good(ratings, "ratings", examples)
        skipped = {
            "users": users_all.height - users.height,
            "movies": movies_all.height - movies.height,
            "ratings": ratings.height - good.height,
        }
        if sum(skipped.values()):
            log.warning("%s: skipped malformed lines %s, e.g. %s", self.root, skipped, "; ".join(examples))
        facts = {"ratings_read": len(lines), "bad_lines_skipped": skipped, "bad_line_examples": examples}
        return good, movies, facts

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids.npy`` int32 [N, F_scalar], ``{split}_labels.npy``, ``{split}_values.npy`` (with
        Timestamp) and ``{split}_bags.npy`` int32 [N, 1, L] (with Genres); return the feature map."""
        rated, movies, facts = self._read()
        rows = rated.filter(pl.col("Rating") != 3)  # AutoInt: neutral ratings are dropped
        n = rows.height
        if n == 0:
            raise ValueError(f"{self.paths['ratings']}: no ratings other than 3 to learn from")
        labels = (rows["Rating"] >= 4).cast(pl.Float32).to_numpy()
        parts = split_indices(n, self.split, np.random.default_rng(self.seed))
        train = np.zeros(n, dtype=bool)
        train[parts["train"]] = True

        scalar = [f for f in self.fields if f in SCALAR_FIELDS]
        ids = np.zeros((n, len(scalar)), dtype=np.int32)
        values = np.ones((n, len(scalar)), dtype=np.float32) if "Timestamp" in scalar else None
        fields, extra = [], {}
        for j, f in enumerate(scalar):
            if f == "Timestamp":  # one embedding row scaled by the min-max scaled time (AutoInt)
                t = rows["Timestamp"].to_numpy().astype(np.float64)
                lo, hi = int(t[train].min()), int(t[train].max())
                values[:, j] = np.clip((t - lo) / max(hi - lo, 1), 0.0, 1.0)
                ids[:, j] = 1
                fields.append(Field(f, 3, kind="numeric"))
                extra |= {"timestamp_min": lo, "timestamp_max": hi}
                continue
            col = rows[f]
            if f == "Zipcode" and self.zipcode == "first_digit":
                col = col.str.slice(0, 1)
            ids[:, j], vocab = encode(col, train, self.min_count)
            fields.append(Field(f, vocab))
        bags = None
        if "Genres" in self.fields:
            bags, genres = genre_bags(movies, rows["_movie"].to_numpy().astype(np.int64), train, self.min_count)
            fields.append(genres)
        for s in SPLITS:
            r = parts[s]
            save_split(
                out_dir,
                s,
                SplitArrays(
                    ids=ids[r],
                    labels=labels[r],
                    values=None if values is None else values[r],
                    bags=None if bags is None else bags[r],
                ),
            )

        features = sum(1 if f.kind == "numeric" else f.vocab_size - 2 for f in fields)
        skipped = sum(facts["bad_lines_skipped"].values())
        if self.num_rows is None and not skipped and n != PAPER["instances"]:
            log.warning("%s: %d ratings other than 3, the papers have %d", self.root, n, PAPER["instances"])
        which = (
            f"first {facts['ratings_read']:,} lines"
            if self.num_rows is not None
            else f"{facts['ratings_read']:,} ratings"
        )
        skip_note = f", {skipped:,} malformed lines skipped" if skipped else ""
        return FeatureMap(
            dataset=self.name,
            fields=fields,
            split_sizes={s: len(parts[s]) for s in SPLITS},
            has_values=values is not None,
            description=(
                f"MovieLens-1M ({which}, {n:,} kept without rating 3{skip_note}), {self.recipe} recipe, "
                f"{len(fields)} fields: {', '.join(self.output_fields)}"
            ),
            extra={
                "recipe": self.recipe,
                **facts,
                "rating_3_dropped": rated.height - n,
                "positives": float(labels.mean()),
                "features": int(features),  # AutoInt's count: kept values of every field, 1 per numeric field
                "zipcode": self.zipcode,
                "paper": PAPER,
                **extra,
            },
        )
