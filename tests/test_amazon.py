"""The Amazon reader and DIN's recipe: exact rows on hand-written reviews (ties, a single-review user,
Python-literal and JSON meta, gzip), the history layout, negatives, splits, bad lines, determinism, and
the training entry point end to end. There is no real Amazon sample: every file here is written by hand."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ctrlab.data import cache
from ctrlab.data.amazon import AmazonSource, line_frames
from ctrlab.data.schema import SPLITS, FeatureMap
from tests.helpers import ROOT, train_cli

REVIEWS = "reviews_Electronics_5.json"
META = "meta_Electronics.json"

# (user, asin, time) in file order. U1: A..F at times 1..6, written out of order. U2: G and C tie at
# time 7 (file order G, C), then D. U3: a single review. U4: E, F, G, A, B.
REVIEW_ROWS = [
    ("U1", "C", 3), ("U2", "G", 7), ("U1", "A", 1), ("U4", "E", 1), ("U1", "F", 6), ("U3", "D", 5),
    ("U1", "B", 2), ("U2", "C", 7), ("U4", "F", 2), ("U1", "E", 5), ("U4", "G", 3), ("U1", "D", 4),
    ("U2", "D", 8), ("U4", "A", 4), ("U4", "B", 5),
]  # fmt: skip
# category = the last category of the last path; F's line is a Python literal, G has no meta line, A has a
# second (ignored) line, Z is nobody's item and its broken literal line is never parsed
META_LINES = [
    json.dumps({"asin": "A", "title": "a", "categories": [["Electronics", "x"], ["Electronics", "Audio"]]}),
    json.dumps({"asin": "B", "categories": [["Electronics", "Audio"]]}),
    json.dumps({"asin": "C", "categories": [["Electronics", "Cameras"]], "price": 3.5}),
    json.dumps({"asin": "D", "categories": [["Cameras"]]}),
    json.dumps({"asin": "E", "categories": [["Electronics", "Computers & Accessories", "Cables"]]}),
    repr({"asin": "F", "title": 'Kid\'s "flash"', "categories": [["Electronics", "Flash"]], "related": {"x": [1]}}),
    json.dumps({"asin": "A", "categories": [["Other"]]}),
    "{'asin': 'Z', 'categories': [['broken'",
]
ITEMS = "ABCDEFG"  # every item occurs in a train row, so (min_count 1) item ids are 1..7 in asin order
CATS = {"A": 1, "B": 1, "C": 3, "D": 3, "E": 2, "F": 4, "G": 5}  # Audio, Cables, Cameras, Flash; G: OOV 5


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    text = "".join(s + "\n" for s in lines)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def review(user: str, asin: str, t: int | str) -> str:
    return json.dumps({"reviewerID": user, "asin": asin, "reviewerName": "n", "overall": 5.0, "unixReviewTime": t})


def write_dataset(root: Path, gz: bool = False, reviews: list[str] | None = None, meta: list[str] | None = None):
    root.mkdir(parents=True, exist_ok=True)
    write_lines(root / REVIEWS, reviews if reviews is not None else [review(*r) for r in REVIEW_ROWS], gz)
    write_lines(root / META, meta if meta is not None else META_LINES, gz)
    return root


def source(root: Path, **overrides) -> AmazonSource:
    cfg = dict(
        name="test_amazon", root=str(root), reviews_file=REVIEWS, meta_file=META, recipe="din", max_len=3,
        min_history=1, valid_user_fraction=1.0, min_count=1, num_rows=None, on_bad_line="error", seed=0,
    )  # fmt: skip
    cfg.update(overrides)
    return AmazonSource(**cfg)


def build(src: AmazonSource, cache_root: Path):
    return cache.load(cache.prepare(src, cache_root))


def rows_of(split) -> dict[tuple, dict[float, tuple]]:
    """{(user id, history item ids): {label: (item id, cat id, history cat ids)}} of one split."""
    out: dict[tuple, dict[float, tuple]] = {}
    for ids, label, bags in zip(split.ids, split.labels, split.bags, strict=True):
        key = (int(ids[0]), tuple(int(x) for x in bags[0] if x))
        assert float(label) not in out.setdefault(key, {}), "one positive and one negative per target"
        out[key][float(label)] = (int(ids[1]), int(ids[2]), tuple(int(x) for x in bags[1] if x))
    return out


def item(asin: str) -> int:
    return ITEMS.index(asin) + 1


def hist(asins: str) -> tuple[int, ...]:
    return tuple(item(a) for a in asins)


# --------------------------------------------------------------------------------------------- din recipe


def test_din_recipe_exact_rows(tmp_path):
    """Targets from the 2nd review on, last review -> test, 2nd-to-last -> valid (fraction 1), histories
    of the 3 most recent earlier items, oldest first; ties keep the file order; U3 (one review) is gone."""
    fm, splits = build(source(write_dataset(tmp_path / "raw")), tmp_path / "c")
    assert [(f.name, f.kind, f.shares) for f in fm.fields] == [
        ("user_id", "categorical", None), ("item_id", "categorical", None), ("cat_id", "categorical", None),
        ("hist_item_id", "sequence", "item_id"), ("hist_cat_id", "sequence", "cat_id"),
    ]  # fmt: skip
    assert fm.vocab_sizes == [4, 9, 6, 9, 6]  # users U1, U4 (+ pad, OOV); items A..G; 4 categories
    assert fm.bag_len == 3 and fm.split_sizes == {"train": 10, "valid": 6, "test": 6}
    u1, u4, oov_user = 1, 2, 3  # U2 has no train target: OOV
    expected = {  # (user, history) -> positive item
        "train": {(u1, "A"): "B", (u1, "AB"): "C", (u1, "ABC"): "D", (u4, "E"): "F", (u4, "EF"): "G"},
        "valid": {(u1, "BCD"): "E", (u4, "EFG"): "A", (oov_user, "G"): "C"},
        "test": {(u1, "CDE"): "F", (u4, "FGA"): "B", (oov_user, "GC"): "D"},
    }
    reviewed = {u1: set("ABCDEF"), u4: set("EFGAB"), oov_user: set("GCD")}
    for s in SPLITS:
        got = rows_of(splits[s])
        assert set(got) == {(u, hist(h)) for u, h in expected[s]}, s
        for (u, h), pos in expected[s].items():
            rows = got[(u, hist(h))]
            assert rows[1.0] == (item(pos), CATS[pos], tuple(CATS[a] for a in h)), (s, u, h)
            neg_item, neg_cat, neg_hist_cats = rows[0.0]
            assert ITEMS[neg_item - 1] not in reviewed[u] and neg_cat == CATS[ITEMS[neg_item - 1]]
            assert neg_hist_cats == rows[1.0][2]
    assert {rows_of(splits["train"])[(u1, hist(h))][0.0][0] for h in ("A", "AB", "ABC")} == {item("G")}
    bags = splits["test"].bags
    lengths = (bags != 0).sum(axis=-1)  # [N, 2]
    steps = np.arange(3)
    assert ((bags != 0) == (steps < lengths[..., None])).all(), "0-padded at the end only"
    assert (lengths[:, 0] == lengths[:, 1]).all()  # an unknown category is OOV, never 0
    e = fm.extra
    assert (e["users"], e["items"], e["categories"], e["reviews"]) == (4, 7, 4, 15)
    assert e["items_without_category"] == 1 and e["meta_lines_parsed_as_python_literal"] == 1  # F (not Z)
    assert e["targets"] == {"train": 5, "valid": 3, "test": 3} and e["histories_truncated"] == 3


def test_gzip_files_give_the_same_arrays_and_plain_wins(tmp_path):
    plain = build(source(write_dataset(tmp_path / "plain")), tmp_path / "c1")[1]
    gz_root = write_dataset(tmp_path / "gz", gz=True)
    assert not (gz_root / REVIEWS).exists() and (gz_root / f"{REVIEWS}.gz").exists()
    gz = build(source(gz_root), tmp_path / "c2")[1]
    for s in SPLITS:
        for kind in ("ids", "labels", "bags"):
            np.testing.assert_array_equal(getattr(plain[s], kind), getattr(gz[s], kind), err_msg=f"{s} {kind}")
    # both present: the plain file is read (here: a different one, with one review less)
    write_lines(gz_root / REVIEWS, [review(*r) for r in REVIEW_ROWS[:-1]])
    assert source(gz_root).files()[0] == gz_root / REVIEWS
    assert build(source(gz_root), tmp_path / "c3")[0].extra["reviews"] == 14


def test_all_python_literal_meta_equals_json_meta(tmp_path):
    """The 2014 meta files are Python literals throughout; they parse to the same categories."""
    literal = [repr(json.loads(s)) if s.startswith('{"') else s for s in META_LINES]
    assert all(not s.startswith('{"') for s in literal)
    a = build(source(write_dataset(tmp_path / "a")), tmp_path / "ca")
    b = build(source(write_dataset(tmp_path / "b", meta=literal)), tmp_path / "cb")
    assert b[0].extra["meta_lines_parsed_as_python_literal"] == 7  # Z's line is skipped unparsed
    assert a[0].vocab_sizes == b[0].vocab_sizes
    for s in SPLITS:
        np.testing.assert_array_equal(a[1][s].ids, b[1][s].ids)
        np.testing.assert_array_equal(a[1][s].bags, b[1][s].bags)


def test_min_history_zero_keeps_first_reviews_with_empty_history(tmp_path):
    fm, splits = build(source(write_dataset(tmp_path / "raw"), min_history=0), tmp_path / "c")
    # + the 1st reviews of U1, U2, U4 in train; U3's only review is its last: test
    assert fm.extra["targets"] == {"train": 8, "valid": 3, "test": 4}
    for s in ("train", "test"):
        empty = (splits[s].bags == 0).all(axis=(1, 2))
        assert empty.sum() == 2 * (3 if s == "train" else 1)
    # U3's only review is its last: test, empty history, a user never seen in train (OOV)
    test = splits["test"]
    empty = (test.bags == 0).all(axis=(1, 2))
    assert (test.ids[empty, 0] == fm.fields[0].oov_id).all()
    assert sorted(test.ids[empty & (test.labels == 1), 1].tolist()) == [item("D")]


def test_valid_user_fraction_zero_leaves_valid_empty_and_train_whole(tmp_path):
    fm, splits = build(source(write_dataset(tmp_path / "raw"), valid_user_fraction=0.0), tmp_path / "c")
    assert fm.split_sizes == {"train": 16, "valid": 0, "test": 6}
    assert splits["valid"].bags.shape == (0, 2, 3)


def test_num_rows_reads_the_first_lines(tmp_path):
    fm, _ = build(source(write_dataset(tmp_path / "raw"), num_rows=9), tmp_path / "c")
    assert fm.extra["review_lines_read"] == 9 and fm.extra["reviews"] == 9
    assert "first 9 lines" in fm.description


# --------------------------------------------------------------------------------------------- negatives


def random_reviews(n_users: int, n_items: int, seed: int) -> list[str]:
    """Users with 4..12 distinct items each, at random times (ties included)."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(n_users):
        for i in rng.choice(n_items, rng.integers(4, 13), replace=False):
            lines.append(review(f"u{u:04d}", f"i{i:04d}", int(rng.integers(0, 20))))
    rng.shuffle(lines)
    return lines


def test_negatives_are_never_the_users_items_and_splits_follow_time(tmp_path):
    meta = [json.dumps({"asin": f"i{i:04d}", "categories": [[f"c{i % 7}"]]}) for i in range(40)]
    root = write_dataset(tmp_path / "raw", reviews=random_reviews(150, 40, seed=3), meta=meta)
    fm, splits = build(source(root, max_len=20, seed=4), tmp_path / "c")
    test = splits["test"]
    assert fm.split_sizes["test"] == 2 * 150 and fm.split_sizes["valid"] == 2 * 150  # a pair per user
    assert fm.extra["histories_truncated"] == 0
    # each user's items: its test history + its test target; every user has train rows (>= 4 reviews)
    items_of: dict[int, set[int]] = {}
    for ids, label, bags in zip(test.ids, test.labels, test.bags, strict=True):
        if label == 1:
            assert ids[0] not in items_of, "one test target per user"
            items_of[int(ids[0])] = {int(x) for x in bags[0] if x} | {int(ids[1])}
    assert len(items_of) == 150 and fm.fields[0].oov_id not in items_of
    for s in SPLITS:  # every item occurs in train here, so item ids identify items
        assert (splits[s].ids[:, 1] != fm.fields[1].oov_id).all()
    n_neg = 0
    for s in SPLITS:
        a = splits[s]
        for ids, label, bags in zip(a.ids, a.labels, a.bags, strict=True):
            history = {int(x) for x in bags[0] if x}
            assert history <= items_of[int(ids[0])]  # the history is the user's own, within the test history
            if label == 0:
                assert int(ids[1]) not in items_of[int(ids[0])]
                n_neg += 1
            elif s != "test":  # the test target is each user's last review: later than any other target
                assert len(history) < len(items_of[int(ids[0])]) - 1
    assert n_neg == sum(fm.split_sizes.values()) // 2
    # same cat id for the same item wherever it appears (targets, negatives, histories)
    cat_of = {}
    for s in SPLITS:
        a = splits[s]
        pairs = np.concatenate([a.ids[:, 1:3], a.bags.transpose(0, 2, 1).reshape(-1, 2)])
        for i, c in pairs[pairs[:, 0] > 0]:
            assert cat_of.setdefault(int(i), int(c)) == int(c)


def test_same_seed_same_arrays_other_seed_other_negatives(tmp_path):
    root = write_dataset(tmp_path / "raw", reviews=random_reviews(60, 30, seed=1), meta=[])
    a = build(source(root, seed=7), tmp_path / "a")[1]
    b = build(source(root, seed=7), tmp_path / "b")[1]
    c = build(source(root, seed=8), tmp_path / "c")[1]
    for s in SPLITS:
        for kind in ("ids", "labels", "bags"):
            np.testing.assert_array_equal(getattr(a[s], kind), getattr(b[s], kind))

    def negatives(sp):
        return sorted(map(tuple, np.concatenate([sp[s].ids[sp[s].labels == 0] for s in SPLITS]).tolist()))

    assert negatives(a) != negatives(c)


def test_user_who_reviewed_every_item_stops_the_build(tmp_path):
    reviews = [review("u", a, t) for t, a in enumerate("ABC")] + [review("v", "A", 1), review("v", "B", 2)]
    with pytest.raises(ValueError, match="reviewed every item"):
        build(source(write_dataset(tmp_path / "raw", reviews=reviews, meta=[])), tmp_path / "c")


# --------------------------------------------------------------------------------------------- bad lines


BAD_REVIEWS = [
    ("{not json", "line 3: not a JSON object"),
    ("[1, 2]", "line 3: not a JSON object"),
    (json.dumps({"asin": "A", "unixReviewTime": 1}), "line 3, field reviewerID: missing"),
    (json.dumps({"reviewerID": "U9", "asin": "", "unixReviewTime": 1}), "line 3, field asin: missing"),
    (json.dumps({"reviewerID": "U9", "asin": "A"}), "line 3, field unixReviewTime: missing"),
    (review("U9", "A", "soon"), "line 3, field unixReviewTime: 'soon' is not an integer"),
    (review("U9", "A", 1.5), "line 3, field unixReviewTime: '1.5' is not an integer"),
]


@pytest.mark.parametrize("bad,message", BAD_REVIEWS)
def test_malformed_review_line_names_file_line_and_field(tmp_path, bad, message):
    lines = [review(*r) for r in REVIEW_ROWS]
    root = write_dataset(tmp_path / "raw", reviews=[*lines[:2], bad, *lines[2:]])
    with pytest.raises(ValueError, match=f"{REVIEWS} {message}"):
        build(source(root), tmp_path / "c")


BAD_META = [
    ("{'asin': 'B', 'categories': [['x']", "line 2: neither JSON nor a Python dict literal"),
    ("{'title': 'B', 'categories': [['x']]}", "line 2, field asin: missing"),
    (json.dumps({"title": "B"}), "line 2, field asin: missing"),
]


@pytest.mark.parametrize("bad,message", BAD_META)
def test_malformed_meta_line_names_file_line_and_field(tmp_path, bad, message):
    root = write_dataset(tmp_path / "raw", meta=[META_LINES[0], bad, *META_LINES[1:]], gz=True)
    with pytest.raises(ValueError, match=f"{META}.gz {message}"):
        build(source(root), tmp_path / "c")


def test_skip_drops_and_counts_bad_lines(tmp_path, caplog):
    lines = [review(*r) for r in REVIEW_ROWS]
    reviews = [lines[0], "garbage", *lines[1:], json.dumps({"reviewerID": "U9"}), "   "]
    meta = [*META_LINES, json.dumps({"title": "no asin"})]
    root = write_dataset(tmp_path / "raw", reviews=reviews, meta=meta)
    with pytest.raises(ValueError, match="line 2: not a JSON object"):
        build(source(root), tmp_path / "c1")
    fm, splits = build(source(root, on_bad_line="skip"), tmp_path / "c2")
    assert fm.extra["bad_lines_skipped"] == {"reviews": 2, "meta": 1}  # the blank line is not bad
    assert fm.extra["bad_line_examples"][0].endswith(
        f"{REVIEWS} line 2: not a JSON object (expected one review per line)"
    )
    assert fm.extra["reviews"] == 15 and fm.extra["review_lines_read"] == 18
    good = build(source(write_dataset(tmp_path / "good")), tmp_path / "c3")[1]
    for s in SPLITS:  # the good lines give the same dataset
        np.testing.assert_array_equal(splits[s].bags, good[s].bags)
    assert "skipped 2 malformed lines" in caplog.text


@pytest.mark.parametrize("tail", ["", "\n"])
@pytest.mark.parametrize("block_bytes", [1, 7, 1 << 20])
def test_line_frames_number_every_line(tmp_path, tail, block_bytes):
    path = tmp_path / "x.json"
    path.write_bytes(("a\n\n  \nb\r\nccc" + tail).encode())
    frames = list(line_frames(path, block_bytes=block_bytes))
    lines = [row for f in frames for row in f.iter_rows()]
    assert lines == [(1, "a"), (2, ""), (3, "  "), (4, "b\r"), (5, "ccc")]
    assert [row for f in line_frames(path, max_lines=4, block_bytes=block_bytes) for row in f.iter_rows()] == lines[:4]


def test_missing_files_and_unset_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"neither {REVIEWS} nor {REVIEWS}.gz"):
        source(tmp_path).cache_key()
    with pytest.raises(ValueError, match="AMAZON="):
        source("???")
    with pytest.raises(ValueError, match="valid_user_fraction"):
        source(tmp_path, valid_user_fraction=1.5)


# --------------------------------------------------------------------------------------------- entry point


def test_hydra_config_builds_the_source(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=amazon_electronics", f"data.source.root={tmp_path}"])
    src = instantiate(cfg.data.source)
    assert isinstance(src, AmazonSource) and src.max_len == 100 and src.recipe == "din"
    assert cfg.data.paper_dataset == "amazon_electronics"


def test_train_entry_point_end_to_end(tmp_path):
    meta = [json.dumps({"asin": f"i{i:04d}", "categories": [["E", f"c{i % 5}"]]}) for i in range(30)]
    root = write_dataset(tmp_path / "raw", reviews=random_reviews(80, 30, seed=2), meta=meta, gz=True)
    metrics = train_cli(
        tmp_path,
        "data=amazon_electronics",
        f"data.source.root={root}",
        "model=fm",
        "data.source.max_len=8",
        "data.batch_size=128",
    )
    assert metrics["status"] == "completed" and metrics["paper_dataset"] == "amazon_electronics"
    sizes = metrics["split_sizes"]
    assert sizes["test"] == 160 and sizes["valid"] % 2 == 0 and 0 < sizes["valid"] < 60  # ~10% of 80 users
    assert 0.0 <= metrics["test/auc"] <= 1.0 and np.isfinite(metrics["test/logloss"])
    assert 0.0 <= metrics["test/gauc"] <= 1.0  # each test user: one positive, one negative
    fm = FeatureMap.load(next((tmp_path / "cache" / "amazon_electronics").glob("*/feature_map.json")))
    assert fm.bag_len == 8 and fm.num_fields == 5
