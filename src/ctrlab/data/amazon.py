"""Amazon product reviews (McAuley et al. 2015) as a behaviour-sequence CTR task, DIN's recipe.

Raw format (https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html, the 2014 release), two files in
``root``, each plain or gzipped (``<name>`` or ``<name>.gz``; the plain one wins when both exist; gzip is
recognised by its magic bytes):

``reviews_Electronics_5.json``
    the 5-core reviews, one JSON object per line; read: ``reviewerID`` (user), ``asin`` (item) and
    ``unixReviewTime`` (seconds; an integer, as a JSON number or a numeric string). Other keys are ignored.
``meta_Electronics.json``
    item metadata, one object per line; read: ``asin`` and ``categories``, a list of category paths
    (``[["Electronics", "Computers & Accessories", "Cables"], ...]``). The 2014 files are Python dict
    literals (single quotes), not JSON: a line that is not valid JSON is parsed with ``ast.literal_eval``
    (one Python call per such line: the only per-line loop of the reader, over meta lines only). To keep
    that cheap, a literal line whose ``'asin': '...'`` (found by a regex) is not among the reviewed items
    is dropped unparsed, so a malformed meta line of an item nobody reviewed goes unnoticed.

Recipe ``din`` (DIN's data preparation, zhougr1993/DeepInterestNetwork ``utils/`` + ``din/build_dataset.py``;
the setting of KFAtt and DPN §3.2: 192,403 users, 63,001 items, 801 categories, 1,689,188 reviews):

* An item's category is the last category of its last category path (DIN's ``categories[-1][-1]``).
  Items are the asins of the reviews; an item with no meta line or no category has an unknown category,
  encoded as the ``cat_id`` OOV id (never 0, which pads the histories), counted in
  ``extra["items_without_category"]``. Duplicate meta lines of one asin: the first wins.
* Each user's reviews are sorted by ``unixReviewTime``; ties keep the file order (DIN's pandas sort, here
  made explicit). The review at position ``p`` (0-based) is a target when it has at least ``min_history``
  earlier reviews (1: DIN starts at the 2nd review, a target with no history carries no behaviour; 0 keeps
  the first review with an empty history). A user with a single review then gives no example.
* Each target gives two rows with the same history: the reviewed item (label 1) and a negative item
  (label 0) drawn uniformly from all items the user never reviewed (DIN draws from every item id and
  redraws the user's own, future ones included). Draws are vectorised rejection sampling from
  ``seed``; a user who reviewed every item stops the build.
* History: the items (``hist_item_id``) and their categories (``hist_cat_id``) of the ``max_len`` most
  recent earlier reviews, oldest first, 0-padded at the end. DIN keeps the whole history; ``max_len``
  (100 by default) bounds the arrays, and ``extra["histories_truncated"]`` counts the targets it cuts.
  ``hist_item_id`` shares ``item_id``'s vocabulary and embedding rows, ``hist_cat_id`` ``cat_id``'s.
* Splits: the last review of each user is the test target (DIN, KFAtt, DPN). DIN has no validation
  split; here the second-to-last review of a random ``valid_user_fraction`` of the users (drawn from
  ``seed``) is the validation target: it mirrors the test protocol (the next review after the whole
  observed history, no look-ahead) while leaving DIN's train set ~98.5% intact at 0.1. Everything else
  is train. Rows are written in a seeded random order (train rows are thereby shuffled).
* Fields: ``user_id, item_id, cat_id`` (scalar) + ``hist_item_id, hist_cat_id`` (``sequence``). DIN's own
  model does not use the user id; a model may ignore the field. Vocabularies follow the project's rule:
  a value counted fewer than ``min_count`` times in the train split — as a target (positive or negative)
  or inside a train row's history — is OOV; so are values unseen in train. Kept values get ids 1..V in
  ascending order of the raw string (asin, category name, reviewerID).

``num_rows`` keeps the first N lines of the reviews file (smoke runs; users then lose reviews and the
5-core property is gone). Malformed lines — a reviews line that is not a JSON object or lacks
``reviewerID`` / ``asin`` / ``unixReviewTime`` (or has a non-integer time), a meta line that is neither
JSON nor a Python dict literal or lacks ``asin`` — stop the build with a ``ValueError`` naming the file,
the 1-based line number and the field, unless ``on_bad_line: skip`` (dropped, counted in
``extra["bad_lines_skipped"]``, the first few logged). Whitespace-only lines are ignored.

Vectorised with polars / numpy: files are read in blocks of lines, fields extracted with
``str.json_path_match``; sorting, grouping, negative sampling and the padded histories are array
operations (``sequences.py``); ``{split}_bags.npy`` is written a chunk of rows at a time.

The config: ``AmazonSource`` is a frozen dataclass whose fields are the keys of
``configs/data/amazon_electronics.yaml`` with their types (checked by ``ctrlab.run_config`` before any work);
``__post_init__`` checks their values; the cache key is the fields (``ctrlab.data.checks.recipe_key``), with
``root`` replaced by the fingerprints of the two files.
"""

from __future__ import annotations

import ast
import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrlab.data.cache import file_fingerprint
from ctrlab.data.checks import NOT_IN_KEY, ON_BAD_LINE, REPORT_BAD, check_choice, check_path, check_positive, recipe_key
from ctrlab.data.schema import SPLITS, FeatureMap
from ctrlab.data.sequences import din_fields, train_vocab, window_coverage, write_bags

log = logging.getLogger(__name__)

RECIPE_VERSION = 1
RECIPES = ("din",)
REVIEW_FIELDS = {"reviewerID": "user", "asin": "item", "unixReviewTime": "time"}
DIN_ELECTRONICS = {"users": 192_403, "items": 63_001, "categories": 801, "reviews": 1_689_188}  # DIN / DPN
_BLOCK_BYTES = 1 << 25
_LITERAL_ASIN = r"""['"]asin['"]\s*:\s*['"]([^'"]*)['"]"""


# --------------------------------------------------------------------------------------------- reading


def resolve_file(root: Path, name: str) -> Path:
    """``root / name``, else ``root / (name + ".gz")``."""
    for p in (root / name, root / f"{name}.gz"):
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"{root}: neither {name} nor {name}.gz exists (point AMAZON=... or data.source.root=... at the "
        "folder with the Amazon reviews and meta files)"
    )


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def line_frames(path: Path, max_lines: int | None = None, block_bytes: int = _BLOCK_BYTES) -> Iterator[pl.DataFrame]:
    """The lines of ``path`` (plain or gzipped) in blocks, as frames ``line`` (1-based number, Int64) and
    ``text`` (String, invalid UTF-8 replaced), blank lines included."""
    opener = gzip.open if _is_gzip(path) else open
    first, rest = 0, b""
    with opener(path, "rb") as fh:
        while max_lines is None or first < max_lines:
            block = fh.read(block_bytes)
            data = rest + block
            if not data:
                return
            cut = len(data) if not block else data.rfind(b"\n") + 1
            if cut == 0:  # no newline yet: read on
                rest = data
                continue
            data, rest = data[:cut], data[cut:]
            lines = pl.Series("text", [data.decode("utf-8", errors="replace")]).str.split("\n").explode()
            if data.endswith(b"\n"):
                lines = lines.slice(0, len(lines) - 1)
            if max_lines is not None:
                lines = lines.slice(0, max_lines - first)
            frame = pl.DataFrame(
                {"line": pl.int_range(first + 1, first + 1 + len(lines), eager=True, dtype=pl.Int64), "text": lines}
            )
            first += len(lines)
            yield frame
            if not block:
                return


class BadLines:
    """The ``on_bad_line`` policy: raise on the first bad line, or drop, count and remember a few."""

    def __init__(self, policy: str) -> None:
        self.policy, self.count, self.examples = policy, 0, []

    def check(self, problems: pl.DataFrame) -> None:
        """``problems``: ``line`` and ``message`` (already naming file, line and field) of bad lines."""
        if problems.is_empty():
            return
        problems = problems.sort("line")
        if self.policy == "error":
            raise ValueError(problems["message"][0])
        self.count += problems.height
        self.examples += problems["message"].head(REPORT_BAD - len(self.examples)).to_list()


_not_blank = pl.col("text").str.strip_chars() != ""  # whitespace-only lines are ignored


def _where(path: Path) -> pl.Expr:
    return pl.format("{} line {}", pl.lit(str(path)), pl.col("line"))


def read_reviews(path: Path, max_lines: int | None, bad: BadLines) -> tuple[pl.DataFrame, int]:
    """``user, item`` (String), ``time``, ``line`` (Int64) of every good review line, and the lines read."""
    frames, n_lines = [], 0
    for chunk in line_frames(path, max_lines):
        n_lines += chunk.height
        fields = (
            chunk.filter(_not_blank)
            .select(
                "line",
                "text",
                *[pl.col("text").str.json_path_match(f"$.{k}").alias(v) for k, v in REVIEW_FIELDS.items()],
            )
            .with_columns(pl.col("time").alias("time_raw"), pl.col("time").str.to_integer(strict=False))
        )
        missing = pl.any_horizontal(pl.col(c).is_null() | (pl.col(c) == "") for c in ("user", "item"))
        ok = ~missing & pl.col("time").is_not_null()
        suspects = fields.filter(~ok)
        if not suspects.is_empty():
            is_object = pl.col("text").str.json_path_match("$").str.starts_with("{").fill_null(False)

            def field(key: str, what: pl.Expr | None = None) -> pl.Expr:
                return pl.format(
                    "{}, field {}: {}", _where(path), pl.lit(key), pl.lit("missing") if what is None else what
                )

            message = (
                pl.when(~is_object)
                .then(pl.format("{}: not a JSON object (expected one review per line)", _where(path)))
                .when(pl.col("user").is_null() | (pl.col("user") == ""))
                .then(field("reviewerID"))
                .when(pl.col("item").is_null() | (pl.col("item") == ""))
                .then(field("asin"))
                .when(pl.col("time_raw").is_null())
                .then(field("unixReviewTime"))
                .otherwise(field("unixReviewTime", pl.format("'{}' is not an integer", pl.col("time_raw"))))
            )
            bad.check(suspects.select("line", message.alias("message")))
        frames.append(fields.filter(ok).select("user", "item", "time", "line"))
    schema = {"user": pl.String, "item": pl.String, "time": pl.Int64, "line": pl.Int64}
    return (pl.concat(frames) if frames else pl.DataFrame(schema=schema)), n_lines


def _literal_meta(text: str) -> tuple[str | None, str | None, str | None]:
    """A Python-literal meta line -> (asin, category, problem)."""
    try:
        d = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None, None, "neither JSON nor a Python dict literal"
    if not isinstance(d, dict):
        return None, None, "neither a JSON object nor a Python dict literal"
    asin = d.get("asin")
    if asin is None or asin == "":
        return None, None, "field asin: missing"
    paths = d.get("categories")
    category = None
    if isinstance(paths, list) and paths and isinstance(paths[-1], list) and paths[-1]:
        category = None if paths[-1][-1] is None else str(paths[-1][-1])
    return str(asin), category, None


def read_meta(path: Path, items: pl.Series, bad: BadLines) -> tuple[pl.DataFrame, int]:
    """``item, category`` (String; category null when unknown) of the meta lines of ``items``, the first
    line of each item winning; and the number of lines parsed as Python literals."""
    frames, n_literal = [], 0
    wanted = items.unique()
    for chunk in line_frames(path):
        fields = chunk.filter(_not_blank).with_columns(
            pl.col("text").str.json_path_match("$.asin").alias("item"),
            pl.col("text").str.json_path_match("$.categories[-1:][-1:]").alias("category"),
        )
        suspects = fields.filter(pl.col("item").is_null() | (pl.col("item") == ""))
        json_object = pl.col("text").str.json_path_match("$").str.starts_with("{").fill_null(False)
        suspects = suspects.with_columns(json_object.alias("is_json"))
        problems = suspects.filter("is_json").select(
            "line", pl.format("{}, field asin: missing", _where(path)).alias("message")
        )
        literal = suspects.filter(~pl.col("is_json")).with_columns(
            pl.col("text").str.extract(_LITERAL_ASIN, 1).alias("guess")
        )
        literal = literal.filter(pl.col("guess").is_null() | pl.col("guess").is_in(wanted.implode()))
        n_literal += literal.height
        parsed = [_literal_meta(t) for t in literal["text"]]  # Python literals: one call per line
        lit_frame = pl.DataFrame(
            {
                "line": literal["line"],
                "item": [p[0] for p in parsed],
                "category": [p[1] for p in parsed],
                "problem": [p[2] for p in parsed],
            },
            schema={"line": pl.Int64, "item": pl.String, "category": pl.String, "problem": pl.String},
        )
        problems = pl.concat(
            [
                problems,
                lit_frame.filter(pl.col("problem").is_not_null()).select(
                    "line",
                    pl.when(pl.col("problem").str.starts_with("field"))
                    .then(pl.format("{}, {}", _where(path), pl.col("problem")))
                    .otherwise(pl.format("{}: {}", _where(path), pl.col("problem")))
                    .alias("message"),
                ),
            ]
        )
        bad.check(problems)
        good = pl.concat(
            [
                fields.filter(pl.col("item").is_not_null() & (pl.col("item") != "")).select("line", "item", "category"),
                lit_frame.filter(pl.col("problem").is_null()).select("line", "item", "category"),
            ]
        )
        frames.append(good.filter(pl.col("item").is_in(wanted.implode())))
    schema = {"line": pl.Int64, "item": pl.String, "category": pl.String}
    meta = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    meta = meta.sort("line").unique(subset="item", keep="first", maintain_order=True)
    return meta.select("item", "category"), n_literal


# --------------------------------------------------------------------------------------------- sampling


def sample_negatives(users: np.ndarray, reviewed: np.ndarray, num_items: int, rng: np.random.Generator) -> np.ndarray:
    """One item per entry of ``users`` [n], uniform over the items that user never reviewed; ``reviewed``
    holds the sorted unique keys ``user * num_items + item`` of every review. Rejection sampling, one round
    per redraw of the rejected entries. int64 [n]"""
    neg = rng.integers(0, num_items, size=len(users))
    todo = np.arange(len(users))
    while len(todo):
        keys = users[todo] * num_items + neg[todo]
        at = np.minimum(np.searchsorted(reviewed, keys), len(reviewed) - 1)
        todo = todo[reviewed[at] == keys]
        neg[todo] = rng.integers(0, num_items, size=len(todo))
    return neg


# --------------------------------------------------------------------------------------------- source


@dataclass(frozen=True)
class AmazonSource:
    """Amazon reviews + meta with DIN's recipe; see the module docstring. The fields are the keys of
    ``configs/data/amazon_electronics.yaml``."""

    name: str
    root: str = field(metadata=NOT_IN_KEY)  # in the cache key by its files' fingerprints
    reviews_file: str
    meta_file: str
    recipe: str
    max_len: int
    min_history: int
    valid_user_fraction: float
    min_count: int
    num_rows: int | None
    on_bad_line: str
    seed: int

    def __post_init__(self) -> None:
        check_choice("recipe", self.recipe, RECIPES)
        check_choice("on_bad_line", self.on_bad_line, ON_BAD_LINE)
        check_positive("max_len", self.max_len)
        if self.min_history < 0:
            raise ValueError(f"data.source.min_history = {self.min_history} must be >= 0")
        if not 0.0 <= self.valid_user_fraction <= 1.0:
            raise ValueError(f"data.source.valid_user_fraction = {self.valid_user_fraction} must lie in [0, 1]")
        check_positive("num_rows", self.num_rows, nullable=True)
        check_path("root", self.root, "AMAZON=/folder/with/the/files or data.source.root=...")

    def files(self) -> tuple[Path, Path]:
        """The reviews and meta files in ``root`` (each plain or ``.gz``)."""
        root = Path(self.root)
        return resolve_file(root, self.reviews_file), resolve_file(root, self.meta_file)

    def cache_key(self) -> dict[str, Any]:
        reviews, meta = self.files()
        return {
            "source": "amazon",
            "recipe_version": RECIPE_VERSION,
            **recipe_key(self),
            "reviews": file_fingerprint(reviews),
            "meta": file_fingerprint(meta),
        }

    def build(self, out_dir: Path) -> FeatureMap:
        reviews_path, meta_path = self.files()
        bad_reviews, bad_meta = BadLines(self.on_bad_line), BadLines(self.on_bad_line)
        reviews, n_lines = read_reviews(reviews_path, self.num_rows, bad_reviews)
        if reviews.is_empty():
            raise ValueError(f"{reviews_path}: no reviews to read")
        items = reviews["item"].unique().sort()  # raw item index = rank of the asin (DIN's remap)
        meta, n_literal = read_meta(meta_path, items, bad_meta)
        for path, b in ((reviews_path, bad_reviews), (meta_path, bad_meta)):
            if b.count:
                log.warning("%s: skipped %d malformed lines, e.g. %s", path, b.count, "; ".join(b.examples))

        item_frame = pl.DataFrame({"item": items}).join(meta, on="item", how="left", maintain_order="left")
        categories = item_frame["category"].drop_nulls().unique().sort()
        num_items, num_cats = len(items), len(categories)
        cat_of_item = (  # raw category index of each item; num_cats = unknown [I]
            item_frame.join(
                pl.DataFrame({"category": categories, "cat": np.arange(num_cats)}),
                on="category",
                how="left",
                maintain_order="left",
            )["cat"]
            .fill_null(num_cats)
            .to_numpy()
            .astype(np.int64)
        )
        users = reviews["user"].unique().sort()
        sorted_reviews = (
            reviews.join(pl.DataFrame({"item": items, "i": np.arange(num_items)}), on="item")
            .join(pl.DataFrame({"user": users, "u": np.arange(len(users))}), on="user")
            .sort("u", "time", "line")  # ties in time keep the file order
        )
        u = sorted_reviews["u"].to_numpy().astype(np.int64)  # [M] the flat behaviour array, by user and time
        it = sorted_reviews["i"].to_numpy().astype(np.int64)
        m, num_users = len(u), len(users)
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])  # [U]
        counts = np.diff(np.r_[starts, m])
        pos = np.arange(m) - np.repeat(starts, counts)  # position in the user's sequence
        last = np.repeat(counts, counts) - 1

        # targets and splits
        rng = np.random.default_rng([self.seed, 0])
        valid_users = rng.random(num_users) < self.valid_user_fraction
        target = np.flatnonzero(pos >= self.min_history)  # [T] indices into the flat array
        split_of = np.zeros(len(target), dtype=np.int8)  # 0 train, 1 valid, 2 test
        split_of[pos[target] == last[target]] = 2
        split_of[(pos[target] == last[target] - 1) & valid_users[u[target]]] = 1
        if len(target) == 0:
            raise ValueError(f"{reviews_path}: no review has {self.min_history} earlier reviews of its user")

        # negatives: one per target, never an item of the user
        reviewed = np.unique(u * num_items + it)
        if (np.bincount(reviewed // num_items, minlength=num_users) == num_items).any():
            raise ValueError(f"{reviews_path}: a user reviewed every item; there is no negative to sample")
        neg = sample_negatives(u[target], reviewed, num_items, np.random.default_rng([self.seed, 1]))

        # history windows of the flat array: the max_len most recent earlier reviews
        length = np.minimum(pos[target], self.max_len)
        lo = target - length

        # vocabularies from the train split (targets of both rows + history occurrences)
        tr = split_of == 0
        cover = window_coverage(m, lo[tr], length[tr], 2.0)  # each train target is two rows
        user_counts = 2 * np.bincount(u[target[tr]], minlength=num_users)
        item_counts = (
            np.bincount(it[target[tr]], minlength=num_items)
            + np.bincount(neg[tr], minlength=num_items)
            + np.bincount(it, weights=cover, minlength=num_items)
        )
        cat_counts = (
            np.bincount(cat_of_item[it[target[tr]]], minlength=num_cats + 1)
            + np.bincount(cat_of_item[neg[tr]], minlength=num_cats + 1)
            + np.bincount(cat_of_item[it], weights=cover, minlength=num_cats + 1)
        )
        unknown = np.zeros(num_cats + 1, dtype=bool)
        unknown[num_cats] = True
        user_lut, user_vocab = train_vocab(user_counts, self.min_count)
        item_lut, item_vocab = train_vocab(item_counts, self.min_count)
        cat_lut, cat_vocab = train_vocab(cat_counts, self.min_count, forced_oov=unknown)
        flat_item, flat_cat = item_lut[it], cat_lut[cat_of_item[it]]  # [M] local ids, all >= 1

        # rows: two per target (the review, label 1; its negative, label 0), in a seeded random order
        shuffle = np.random.default_rng([self.seed, 2])
        sizes = {}
        for s, split in enumerate(SPLITS):
            ex = np.flatnonzero(split_of == s)
            rows = shuffle.permutation(2 * len(ex))
            e, positive = ex[rows // 2], rows % 2 == 0
            item = np.where(positive, it[target[e]], neg[e])
            ids = np.stack([user_lut[u[target[e]]], item_lut[item], cat_lut[cat_of_item[item]]], axis=1)
            np.save(out_dir / f"{split}_ids.npy", ids.astype(np.int32))
            np.save(out_dir / f"{split}_labels.npy", positive.astype(np.float32))
            write_bags(out_dir / f"{split}_bags.npy", [flat_item, flat_cat], lo[e], length[e], self.max_len)
            sizes[split] = len(rows)

        fields = din_fields(user_vocab, item_vocab, cat_vocab, self.max_len)
        which = f"first {n_lines:,} lines" if self.num_rows is not None else f"{m:,} reviews"
        return FeatureMap(
            dataset=self.name,
            fields=fields,
            split_sizes=sizes,
            description=f"Amazon {reviews_path.name} ({which}; {num_users:,} users, {num_items:,} items, "
            f"{num_cats:,} categories), {self.recipe} recipe, histories <= {self.max_len}",
            extra={
                "recipe": self.recipe,
                "users": num_users,
                "items": num_items,
                "categories": num_cats,
                "reviews": m,
                "review_lines_read": n_lines,
                "meta_lines_parsed_as_python_literal": n_literal,
                "items_without_category": int((cat_of_item == num_cats).sum()),
                "targets": {split: int((split_of == s).sum()) for s, split in enumerate(SPLITS)},
                "histories_truncated": int((pos[target] > self.max_len).sum()),
                "bad_lines_skipped": {"reviews": bad_reviews.count, "meta": bad_meta.count},
                "bad_line_examples": bad_reviews.examples + bad_meta.examples,
                "din_full_data": DIN_ELECTRONICS,
            },
        )
