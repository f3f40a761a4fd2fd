"""The MovieLens-1M reader (AutoInt's recipe): exact ids on hand-written rows in the real ``::`` format
(latin-1 titles, genre lists of different lengths, rating-3 rows), the genres bag down to a model's pooled
embedding, malformed lines, splits, thresholds, cache keys, the Hydra config and a training run end to end."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ctrlab.data import cache
from ctrlab.data.datamodule import BatchLoader, CTRDataModule
from ctrlab.data.movielens import MovieLens1MSource, parse_movies, read_lines
from ctrlab.data.schema import SPLITS
from ctrlab.nn.embedding import FeatureEmbedding
from tests.helpers import ROOT, train_cli

ALL_FIELDS = ["UserID", "MovieID", "Gender", "Age", "Occupation", "Zipcode", "ReleaseYear", "Timestamp", "Genres"]

USERS = [
    "1::F::1::10::48067",
    "2::M::56::16::70072",
    "3::M::25::15::55117-1234",
]
MOVIES = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::Café au lait (Métisse) (1993)::Comedy",  # latin-1 accents
    "3::Old: a :: strange film (1925)::Drama|Drama|War",  # '::' in the title, a repeated genre
    "4::Dr. Strangelove (1963)::Sci-Fi|War",
    "5::No Year Given::Comedy",
]
RATINGS = [
    "1::1::5::978300760",
    "1::2::3::978302109",  # rating 3: dropped
    "2::3::1::978301968",
    "3::1::4::978300275",
    "3::4::2::978824291",
    "2::2::5::978302268",
    "1::5::3::978300000",  # dropped
    "3::5::1::978300100",
]
KEPT = [0, 2, 3, 4, 5, 7]  # ratings lines that are not rating 3


def write(root: Path, users=USERS, movies=MOVIES, ratings=RATINGS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "users.dat").write_bytes("".join(x + "\n" for x in users).encode("latin-1"))
    (root / "movies.dat").write_bytes("".join(x + "\n" for x in movies).encode("latin-1"))
    (root / "ratings.dat").write_bytes("".join(x + "\n" for x in ratings).encode("latin-1"))
    return root


def source(root: Path, **overrides) -> MovieLens1MSource:
    cfg = dict(
        name="test_ml1m", root=str(root), recipe="autoint", fields=ALL_FIELDS, zipcode="full",
        split=[1.0, 0.0, 0.0], min_count=1, num_rows=None, on_bad_line="error", seed=0,
    )  # fmt: skip
    cfg.update(overrides)
    return MovieLens1MSource(**cfg)


def build(src: MovieLens1MSource, cache_root: Path):
    return cache.load(cache.prepare(src, cache_root))


def test_parse_movies_latin1_titles_years_and_genres(tmp_path):
    movies = parse_movies(read_lines(write(tmp_path / "d") / "movies.dat"))
    assert movies["Title"].to_list() == [
        "Toy Story (1995)",
        "Café au lait (Métisse) (1993)",
        "Old: a :: strange film (1925)",
        "Dr. Strangelove (1963)",
        "No Year Given",
    ]
    assert movies["ReleaseYear"].to_list() == [1995, 1993, 1920, 1960, None]  # AutoInt's buckets
    assert movies["Genres"].to_list() == [
        ["Animation", "Children's", "Comedy"],
        ["Comedy"],
        ["Drama", "War"],
        ["Sci-Fi", "War"],
        ["Comedy"],
    ]


def test_exact_ids_labels_values_and_genres(tmp_path):
    fm, splits = build(source(write(tmp_path / "d")), tmp_path / "c")
    assert [f.name for f in fm.fields] == ALL_FIELDS
    assert [f.kind for f in fm.fields] == ["categorical"] * 7 + ["numeric", "multi"]
    assert fm.split_sizes == {"train": 6, "valid": 0, "test": 0}
    assert fm.extra["rating_3_dropped"] == 2 and fm.extra["ratings_read"] == 8
    # values in ascending order -> 1..V: users 1,2,3; movies 1..5; F<M; ages 1<25<56; occupations 10<15<16;
    # zips '48067'<'55117-1234'<'70072'; release 1920<1960<1993<1995 (movie 5: no year -> 0)
    user = {1: [1, 1, 1, 1], 2: [2, 3, 3, 3], 3: [2, 2, 2, 2]}  # Gender, Age, Occupation, Zipcode
    row_of_line = {0: (1, 1), 2: (2, 3), 3: (3, 1), 4: (3, 4), 5: (2, 2), 7: (3, 5)}  # line -> (user, movie)
    release = {1: 4, 2: 3, 3: 1, 4: 2, 5: 0}
    genres = {1: [1, 2, 3], 2: [3, 0, 0], 3: [4, 6, 0], 4: [5, 6, 0], 5: [3, 0, 0]}  # Animation<Children's<...
    rating = {0: 5, 2: 1, 3: 4, 4: 2, 5: 5, 7: 1}
    stamp = {0: 978300760, 2: 978301968, 3: 978300275, 4: 978824291, 5: 978302268, 7: 978300100}
    lo, hi = 978300100, 978824291
    order = np.array(KEPT)[np.random.default_rng(0).permutation(6)]  # the kept lines in train order
    for k, line in enumerate(order):
        u, m = row_of_line[line]
        assert splits["train"].ids[k].tolist() == [u, m, *user[u], release[m], 1], line
        assert splits["train"].labels[k] == float(rating[line] >= 4)
        assert splits["train"].values[k, :7].tolist() == [1.0] * 7
        assert splits["train"].values[k, 7] == pytest.approx((stamp[line] - lo) / (hi - lo), abs=1e-6)
        assert splits["train"].bags[k].tolist() == [genres[m]], line
    assert fm.vocab_sizes == [5, 7, 4, 5, 5, 5, 6, 3, 8]  # 6 genres + pad + OOV
    assert fm.fields[-1].max_len == 3 and fm.bag_len == 3  # the longest genre list
    assert fm.extra["features"] == 3 + 5 + 2 + 3 + 3 + 3 + 4 + 1 + 6
    assert fm.extra["timestamp_min"] == lo and fm.extra["timestamp_max"] == hi


def test_split_sizes_are_seeded_and_valid_test_unseen_values_are_oov(tmp_path):
    users = [f"{u}::{'MF'[u % 2]}::{[1, 18, 25][u % 3]}::{u % 5}::{10000 + u:05d}" for u in range(1, 101)]
    movies = [f"{m}::Film {m} ({1960 + m})::{'|'.join(['Drama', 'War', 'Comedy'][: 1 + m % 3])}" for m in range(1, 11)]
    ratings = [f"{u}::{1 + u % 10}::{[1, 2, 3, 4, 5][u % 5]}::{978300000 + u}" for u in range(1, 101)]
    root = write(tmp_path / "d", users, movies, ratings)
    fm, splits = build(source(root, split=[0.8, 0.1, 0.1], seed=4), tmp_path / "a")
    assert fm.extra["rating_3_dropped"] == 20 and fm.split_sizes == {"train": 64, "valid": 8, "test": 8}
    user = fm.fields[0]  # one rating per user: valid/test users never appear in train
    assert user.vocab_size == 66 and sorted(splits["train"].ids[:, 0].tolist()) == list(range(1, 65))
    assert (splits["valid"].ids[:, 0] == user.oov_id).all() and (splits["test"].ids[:, 0] == user.oov_id).all()
    assert (splits["test"].values[:, 7] >= 0).all() and (splits["test"].values[:, 7] <= 1).all()  # clipped
    again = build(source(root, split=[0.8, 0.1, 0.1], seed=4), tmp_path / "b")[1]
    other = build(source(root, split=[0.8, 0.1, 0.1], seed=5), tmp_path / "e")[1]
    for s in SPLITS:
        np.testing.assert_array_equal(again[s].ids, splits[s].ids)
        np.testing.assert_array_equal(again[s].bags, splits[s].bags)
    assert not np.array_equal(other["test"].values, splits["test"].values)


def test_min_count_thresholds_fields_and_genres(tmp_path):
    fm, splits = build(source(write(tmp_path / "d"), min_count=2), tmp_path / "c")
    train = splits["train"]
    names = [f.name for f in fm.fields]
    # users 2 and 3 have 2 kept ratings each, user 1 one: user 1 -> OOV
    assert fm.fields[0].vocab_size == 4 and sorted(train.ids[:, 0].tolist()) == [1, 1, 2, 2, 2, 3]
    # genres on >= 2 train rows: Animation, Children's (movie 1, 2 rows), Comedy (movies 1, 2, 5: 4 rows),
    # War (movies 3, 4: 2 rows); Drama (1 row: movie 3) and Sci-Fi (1 row: movie 4) -> OOV (5)
    genres = fm.fields[names.index("Genres")]
    assert genres.vocab_size == 6
    bags = {tuple(b[0]) for b in train.bags}
    assert bags == {(1, 2, 3), (3, 0, 0), (5, 4, 0)}


def test_zipcode_first_digit_and_field_subsets(tmp_path):
    root = write(tmp_path / "d")
    fm, splits = build(source(root, zipcode="first_digit", fields=["Zipcode"]), tmp_path / "a")
    assert fm.vocab_sizes == [5] and sorted(set(splits["train"].ids[:, 0].tolist())) == [1, 2, 3]  # '4' '5' '7'
    assert not fm.has_values and not fm.bag_fields and splits["train"].bags is None
    dpn = ["MovieID", "Gender", "Age", "Occupation", "Zipcode", "Timestamp", "Genres"]  # DPN's 7 (no UserID)
    fm = build(source(root, fields=dpn), tmp_path / "b")[0]
    assert [f.name for f in fm.fields] == dpn and fm.num_fields == 7
    autoint = ["Genres", "Gender", "Age", "Occupation", "Zipcode", "ReleaseYear", "Timestamp"]  # bag moved last
    fm = build(source(root, fields=autoint), tmp_path / "e")[0]
    assert [f.name for f in fm.fields] == autoint[1:] + ["Genres"] and fm.num_fields == 7
    assert fm.extra["features"] == 2 + 3 + 3 + 3 + 4 + 1 + 6  # AutoInt's counting (3,524 on the full data)
    with pytest.raises(ValueError, match=r"data\.source\.fields = \['UserID', 'Title'\] must be distinct names"):
        source(root, fields=["UserID", "Title"])
    with pytest.raises(ValueError, match=r"data\.source\.zipcode = 'prefix' is not one of \['full', 'first_digit'\]"):
        source(root, zipcode="prefix")


BAD = [
    ("ratings", "1::1::5", "column Timestamp: missing, the line has 3 '::'-separated columns, expected 4"),
    ("ratings", "1::1::5::9::9", "column 5: the line has 5 '::'-separated columns, expected 4"),
    ("ratings", "", "column UserID: empty line"),
    ("ratings", "x::1::5::978300760", "column UserID: 'x' is not an integer"),
    ("ratings", "1::1::4.5::978300760", "column Rating: '4.5' is not an integer"),
    ("ratings", "1::1::6::978300760", "column Rating: 6 is not 1..5"),
    ("ratings", "1::1::0::978300760", "column Rating: 0 is not 1..5"),
    ("ratings", "9::1::5::978300760", "column UserID: user 9 is not in users.dat"),
    ("ratings", "1::99::5::978300760", "column MovieID: movie 99 is not in movies.dat"),
    ("users", "4::X::1::10::48067", "column Gender: 'X' is not M or F"),
    ("users", "4::M::old::10::48067", "column Age: 'old' is not an integer"),
    ("users", "4::M::1::10", "column Zip-code: missing, the line has 4 '::'-separated columns, expected 5"),
    ("users", "2::M::1::10::48067", "column UserID: user 2 is already on line 2"),
    ("movies", "6::Some Film (1999)", "column Genres: missing, the line has 2 '::'-separated columns, expected 3"),
    ("movies", "6", "column Title: missing, the line has 1 '::'-separated columns, expected 3"),
    ("movies", "six::Some Film (1999)::Drama", "column MovieID: 'six' is not an integer"),
    ("movies", "2::Again (1999)::Drama", "column MovieID: movie 2 is already on line 2"),
]


@pytest.mark.parametrize("file,bad,message", BAD)
def test_malformed_line_names_file_line_and_column(tmp_path, file, bad, message):
    lines = {"users": list(USERS), "movies": list(MOVIES), "ratings": list(RATINGS)}
    lines[file].insert(3, bad)
    root = write(tmp_path / "d", **lines)
    with pytest.raises(ValueError) as err:
        cache.prepare(source(root), tmp_path / "c")
    assert f"{root / (file + '.dat')} line 4, {message}" in str(err.value)
    assert not list((tmp_path / "c").glob("*/*"))  # nothing half-built is left behind


def test_skip_drops_bad_lines_and_the_ratings_they_orphan(tmp_path, caplog):
    users = [*USERS[:2], "3::?::25::15::55117-1234"]  # user 3's line is bad: its 3 ratings go too
    ratings = [*RATINGS, "1::1::9::978300760", "garbage"]
    root = write(tmp_path / "d", users=users, ratings=ratings)
    with caplog.at_level(logging.WARNING):
        fm, splits = build(source(root, on_bad_line="skip"), tmp_path / "c")
    assert fm.extra["bad_lines_skipped"] == {"users": 1, "movies": 0, "ratings": 5}
    assert fm.split_sizes["train"] == 3  # lines 1, 3 and 6 of ratings.dat
    assert fm.extra["bad_line_examples"][0] == f"{root / 'users.dat'} line 3, column Gender: '?' is not M or F"
    assert f"{root / 'ratings.dat'} line 4, column UserID: user 3 is not in users.dat" in fm.extra["bad_line_examples"]
    assert "6 malformed lines skipped" in fm.description and "skipped malformed lines" in caplog.text


def test_num_rows_reads_the_first_lines_of_ratings(tmp_path):
    fm, _ = build(source(write(tmp_path / "d"), num_rows=4), tmp_path / "c")
    assert fm.extra["ratings_read"] == 4 and fm.split_sizes["train"] == 3
    assert fm.description.startswith("MovieLens-1M (first 4 lines, 3 kept without rating 3), autoint recipe")


def test_cache_is_deterministic_and_keyed_by_the_files(tmp_path):
    root = write(tmp_path / "d")
    a = cache.prepare(source(root, split=[0.5, 0.25, 0.25]), tmp_path / "c1")
    b = cache.prepare(source(root, split=[0.5, 0.25, 0.25]), tmp_path / "c2")
    assert a.name == b.name
    for name in sorted(p.name for p in a.glob("*.npy")):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    with (root / "users.dat").open("a") as fh:
        fh.write("4::F::18::3::01234\n")
    assert cache.prepare(source(root, split=[0.5, 0.25, 0.25]), tmp_path / "c1") != a
    assert cache.prepare(source(root, split=[0.5, 0.25, 0.25], zipcode="first_digit"), tmp_path / "c1") != a


def test_genres_bag_reaches_the_batch_and_is_mean_pooled(tmp_path):
    src = source(write(tmp_path / "d"))
    dm = CTRDataModule(src, str(tmp_path / "c"), batch_size=4, eval_batch_size=4, seed=0)
    dm.prepare_data()
    dm.setup()
    batch = next(iter(BatchLoader(dm.splits["train"], batch_size=4, shuffle=False)))
    fm = dm.feature_map
    assert batch["ids"].shape == (4, 8) and batch["values"].shape == (4, 8)
    assert batch["bag_ids"].shape == (4, 1, 3) and batch["bag_ids"].dtype == torch.int64
    assert batch["bag_lengths"].tolist() == [[int((b > 0).sum())] for b in batch["bag_ids"][:, 0]]
    assert sorted(batch["bag_lengths"][:, 0].tolist()) != [1, 1, 1, 1]  # lists of different lengths
    emb = FeatureEmbedding(fm, dim=4, init_std=1.0)
    out = emb(batch)
    assert out.shape == (4, 9, 4)
    start = int(fm.offsets[-1])  # the genres field's first row in the shared table
    for k in range(4):
        genres = batch["bag_ids"][k, 0]
        rows = emb.table.weight[start + genres[genres > 0]]
        torch.testing.assert_close(out[k, -1], rows.mean(dim=0))
    timestamp = emb.table.weight[int(fm.offsets[7]) + 1] * batch["values"][:, 7:8]
    torch.testing.assert_close(out[:, 7], timestamp)  # the numeric field: its one row, scaled


def test_hydra_config_builds_the_source(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=movielens_1m", f"data.source.root={tmp_path}", "data.num_rows=100"])
    src = instantiate(cfg.data.source)
    assert isinstance(src, MovieLens1MSource) and src.recipe == "autoint"
    assert src.fields == ["UserID", "MovieID", "Gender", "Age", "Occupation", "Zipcode", "Timestamp", "Genres"]
    assert src.split == [0.8, 0.1, 0.1] and src.min_count == 1 and src.num_rows == 100
    assert cfg.data.batch_size == 1024 and cfg.data.paper_dataset == "movielens_1m"


def readme_commands() -> list[list[str]]:
    """The README's MovieLens-1M commands (lines starting ``MOVIELENS_1M=``), each as its Hydra overrides."""
    lines = [x.strip() for x in (ROOT / "README.md").read_text().splitlines() if x.strip().startswith("MOVIELENS_1M=")]
    return [shlex.split(x.split("python -m ctrlab.train", 1)[1]) for x in lines]


def test_readme_commands_choose_the_fields_they_name(tmp_path):
    """Every README MovieLens-1M command composes with the train config, builds a cache on the hand-written
    files with the fields it names (the default 8 when it names none) and its model scores a batch; one of
    them is the default without UserID (DPN's 7), so a reader sees every field name to write."""
    default = ["UserID", "MovieID", "Gender", "Age", "Occupation", "Zipcode", "Timestamp", "Genres"]
    root = write(tmp_path / "ml-1m")
    chosen = []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for k, overrides in enumerate(readme_commands()):
            cfg = compose("train", overrides=[*overrides, f"data.source.root={root}"])
            fm, splits = build(instantiate(cfg.data.source), tmp_path / f"c{k}")
            fields = next((o.split("=", 1)[1].strip("[]").split(",") for o in overrides
                           if o.startswith("data.source.fields=")), default)  # fmt: skip
            assert [f.name for f in fm.fields] == fields, overrides
            model = instantiate(cfg.model, _partial_=True)(feature_map=fm)
            batch = next(iter(BatchLoader(splits["train"], batch_size=4, shuffle=False)))
            assert torch.isfinite(model(batch)).all() and model(batch).shape == (4,)
            chosen.append(fields)
    assert default in chosen and default[1:] in chosen, chosen


def write_ml1m_like(root: Path, seed: int = 0) -> Path:
    """Users, movies and ratings in the real format: latin-1 titles, 1-3 genres, ratings 1..5."""
    rng = np.random.default_rng(seed)
    genres = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Drama", "War"]
    users = [f"{u}::{'MF'[u % 2]}::{[1, 18, 25, 35][u % 4]}::{u % 21}::{10000 + 7 * u:05d}" for u in range(1, 41)]
    movies = [
        f"{m}::Café {m} ({1950 + m})::{'|'.join(rng.choice(genres, rng.integers(1, 4), replace=False))}"
        for m in range(1, 31)
    ]
    ratings = [
        f"{u}::{m}::{5 if (u + m) % 3 == 0 else rng.integers(1, 6)}::{978300000 + rng.integers(0, 10**6)}"
        for u in range(1, 41)
        for m in rng.choice(np.arange(1, 31), 25, replace=False)
    ]
    return write(root, users, movies, ratings)


def test_train_entry_point_end_to_end(tmp_path):
    root = write_ml1m_like(tmp_path / "ml-1m")
    metrics = train_cli(tmp_path, "data=movielens_1m", f"data.source.root={root}", "model=fm", "data.batch_size=128")
    assert metrics["status"] == "completed" and metrics["paper_dataset"] == "movielens_1m"
    n = sum(metrics["split_sizes"].values())
    assert metrics["split_sizes"]["train"] == round(0.8 * n) and metrics["global_step"] > 1
    assert np.isfinite(metrics["test/logloss"]) and "8 fields" in metrics["data_description"]
