"""The libFM reader (NFM's MovieLens-tag and Frappe files): exact ids on hand-written rows, labels, field
positions, malformed lines, splits, num_rows, cache keys, the Hydra configs and a training run end to end."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ctrlab.data import cache
from ctrlab.data.libfm import LibFMSource, position_conflicts
from ctrlab.data.schema import SPLITS, FeatureMap
from tests.helpers import ROOT, train_cli

TAG_FIELDS = ["UserID", "MovieID", "tag"]
FILES = {"train": "ml-tag.train.libfm", "valid": "ml-tag.validation.libfm", "test": "ml-tag.test.libfm"}


def write(root: Path, train: list[str], valid: list[str], test: list[str], newline: str = "\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for s, lines in zip(SPLITS, (train, valid, test), strict=True):
        (root / FILES[s]).write_bytes("".join(x + newline for x in lines).encode())
    return root


def source(root: Path, **overrides) -> LibFMSource:
    cfg = dict(
        name="test_ml_tag", root=str(root), files=FILES, fields=TAG_FIELDS, recipe="dpn", split="given",
        ratios=[0.7, 0.2, 0.1], min_count=1, num_rows=None, on_bad_line="error", seed=0,
    )  # fmt: skip
    cfg.update(overrides)
    return LibFMSource(**cfg)


def build(src: LibFMSource, cache_root: Path):
    return cache.load(cache.prepare(src, cache_root))


def row(label: str, *idx: int) -> str:
    return label + " " + " ".join(f"{i}:1" for i in idx)


# users 0..9, movies 10..19, tags 20..29: contiguous ranges in field order, like NFM's files
TRAIN = [
    row("1", 0, 10, 20),
    row("-1", 1, 11, 21),
    row("-1", 0, 12, 20),
    row("1", 2, 10, 22),
    row("0", 3, 13, 23),
    row("+1", 1, 10, 24),
    row("1.0", 4, 14, 20),
]
VALID = [row("1", 0, 10, 20), row("-1", 5, 15, 25)]  # 5, 15, 25: never in train -> OOV
TEST = [row("-1", 1, 19, 29), row("1", 2, 11, 21)]


def test_exact_ids_labels_and_oov(tmp_path):
    fm, splits = build(source(write(tmp_path / "d", TRAIN, VALID, TEST), seed=3), tmp_path / "c")
    assert [f.name for f in fm.fields] == TAG_FIELDS and fm.num_fields == 3
    assert fm.split_sizes == {"train": 7, "valid": 2, "test": 2}
    # kept indices get ids 1..V in ascending order: users 0..4 -> 1..5, movies 10..14 -> 1..5, tags 20..24 -> 1..5
    assert fm.vocab_sizes == [7, 7, 7]
    expected = np.array([[1, 1, 1], [2, 2, 2], [1, 3, 1], [3, 1, 3], [4, 4, 4], [2, 1, 5], [5, 5, 1]])
    perm = np.random.default_rng(3).permutation(7)  # train rows come in a seeded order
    np.testing.assert_array_equal(splits["train"].ids, expected[perm])
    np.testing.assert_array_equal(splits["train"].labels, np.array([1, 0, 0, 1, 0, 1, 1], np.float32)[perm])
    np.testing.assert_array_equal(splits["valid"].ids, [[1, 1, 1], [6, 6, 6]])  # valid/test keep file order
    np.testing.assert_array_equal(splits["test"].ids, [[2, 6, 6], [3, 2, 2]])
    assert splits["valid"].labels.tolist() == [1.0, 0.0] and splits["test"].labels.tolist() == [0.0, 1.0]
    assert fm.extra["index_ranges"] == {"UserID": [0, 5], "MovieID": [10, 19], "tag": [20, 29]}
    assert fm.extra["distinct_indices"] == 20 and fm.extra["features_kept"] == 15
    assert not fm.has_values and not fm.bag_fields


def test_min_count_sends_rare_train_indices_to_oov(tmp_path):
    fm, splits = build(source(write(tmp_path / "d", TRAIN, VALID, TEST), min_count=2), tmp_path / "c")
    # users seen twice in train: 0, 1 -> 1, 2; movies: 10 (3x) -> 1; tags: 20 (3x) -> 1
    assert fm.vocab_sizes == [4, 3, 3]
    assert sorted(splits["train"].ids[:, 0].tolist()) == [1, 1, 2, 2, 3, 3, 3]
    assert sorted(splits["train"].ids[:, 1].tolist()) == [1, 1, 1, 2, 2, 2, 2]
    assert splits["valid"].ids.tolist() == [[1, 1, 1], [3, 2, 2]]


def test_whitespace_crlf_and_missing_final_newline(tmp_path):
    messy = ["1\t0:1  10:1 20:1 ", "-1 1:1 11:1\t21:1"]
    root = write(tmp_path / "d", messy, VALID, TEST, newline="\r\n")
    path = root / FILES["train"]
    path.write_bytes(path.read_bytes()[:-2])  # no newline after the last line
    fm, splits = build(source(root), tmp_path / "c")
    assert fm.split_sizes["train"] == 2
    assert sorted(splits["train"].ids.tolist()) == [[1, 1, 1], [2, 2, 2]]


BAD_LINES = [
    (row("1", 0, 10), "position 3 (field tag): missing, the line has 2 indices, expected 3 (UserID, MovieID, tag)"),
    (row("1", 0), "position 2 (field MovieID): missing, the line has 1 indices"),
    (row("1", 0, 10, 20, 30), "position 4: the line has 4 indices, expected 3"),
    ("", "empty line"),
    (row("2", 0, 10, 20), "label: 2 is not -1, 0 or 1"),
    (row("yes", 0, 10, 20), "label: yes is not -1, 0 or 1"),
    ("1 0:1 x:1 20:1", "position 2 (field MovieID): x:1 is not idx:value"),
    ("1 0:1 10 20:1", "position 2 (field MovieID): 10 is not idx:value"),
    ("1 0:1 -10:1 20:1", "position 2 (field MovieID): -10:1 is not idx:value"),
    ("1 0:1 10:0.5 20:1", "position 2 (field MovieID): 10:0.5 has value 0.5, expected 1 (one-hot)"),
    (row("1", 10, 0, 20), "position 1 (field UserID): index 10 is at position 2 (field MovieID) on 4 lines"),
]


@pytest.mark.parametrize("bad,message", BAD_LINES)
def test_malformed_line_names_file_line_and_position(tmp_path, bad, message):
    root = write(tmp_path / "d", TRAIN[:2] + [bad] + TRAIN[2:], VALID, TEST)
    with pytest.raises(ValueError) as err:
        cache.prepare(source(root), tmp_path / "c")
    assert f"{root / FILES['train']} line 3, {message}" in str(err.value)
    assert not list((tmp_path / "c").glob("*/*"))  # nothing half-built is left behind


def test_index_in_another_position_in_another_file(tmp_path):
    root = write(tmp_path / "d", TRAIN, VALID, [TEST[0], row("1", 2, 20, 21)])  # tag 20 as a movie
    with pytest.raises(ValueError, match=r"ml-tag\.test\.libfm line 2, position 2 \(field MovieID\): index 20 is at "
                       r"position 3 \(field tag\) on 4 lines"):  # fmt: skip
        cache.prepare(source(root), tmp_path / "c")


def test_position_conflicts_majority_and_ties():
    idx = np.array([[0, 5], [0, 5], [5, 0], [1, 2]])
    conflict, home, count = position_conflicts(idx)
    assert conflict.tolist() == [[False, False], [False, False], [True, True], [False, False]]
    assert home[2].tolist() == [1, 0] and count[2].tolist() == [2, 2]
    conflict, home, _ = position_conflicts(np.array([[7, 8], [8, 7]]))  # ties: the lower position wins
    assert conflict.tolist() == [[False, True], [False, True]] and home.tolist() == [[0, 0], [0, 0]]


def test_skip_drops_counts_and_reports(tmp_path, caplog):
    bad = [b for b, _ in BAD_LINES]
    train = [x for pair in zip(TRAIN + TRAIN[:4], bad, strict=True) for x in pair]  # bad lines at even numbers
    root = write(tmp_path / "d", train, VALID + [row("1", 0)], TEST)
    with caplog.at_level(logging.WARNING):
        fm, splits = build(source(root, on_bad_line="skip"), tmp_path / "c")
    assert fm.extra["bad_lines_skipped"] == len(bad) + 1
    assert fm.split_sizes == {"train": 11, "valid": 2, "test": 2}
    assert fm.extra["lines_read"] == {"train": 22, "valid": 3, "test": 2}
    assert fm.extra["bad_line_examples"][0] == (
        f"{root / FILES['train']} line 2, position 3 (field tag): missing, the line has 2 indices, "
        "expected 3 (UserID, MovieID, tag)"
    )
    assert f"skipped {len(bad) + 1} malformed lines" in caplog.text
    assert f"{len(bad) + 1:,} malformed lines skipped" in fm.description
    assert (splits["train"].ids > 0).all()


def test_random_split_by_ratios_is_seeded(tmp_path):
    # one user per row: with min_count 1, valid/test users are all OOV and train users all distinct
    lines = [row("1" if i % 3 else "-1", i, 1000 + i % 7, 2000 + i % 5) for i in range(100)]
    root = write(tmp_path / "d", lines[:60], lines[60:90], lines[90:])
    fm, splits = build(source(root, split="random", ratios=[0.5, 0.3, 0.2], seed=1), tmp_path / "a")
    assert fm.split_sizes == {"train": 50, "valid": 30, "test": 20}
    assert sorted(splits["train"].ids[:, 0].tolist()) == list(range(1, 51))
    assert all((splits[s].ids[:, 0] == 51).all() for s in ("valid", "test"))
    again = build(source(root, split="random", ratios=[0.5, 0.3, 0.2], seed=1), tmp_path / "b")[1]
    other = build(source(root, split="random", ratios=[0.5, 0.3, 0.2], seed=2), tmp_path / "e")[1]
    np.testing.assert_array_equal(again["test"].labels, splits["test"].labels)
    np.testing.assert_array_equal(again["train"].ids, splits["train"].ids)
    assert fm.vocab_sizes != build(source(root, split="given"), tmp_path / "g")[0].vocab_sizes
    assert not np.array_equal(other["train"].ids[:, 1:], splits["train"].ids[:, 1:])


def test_random_split_reads_a_release_of_fewer_files(tmp_path):
    """split: random pools the files that are named: one file, or train + test, give the split that the same
    lines in three files give (pooled in train, valid, test order)."""
    lines = [row("1" if i % 3 else "-1", i % 11, 100 + i % 7, 200 + i % 5) for i in range(60)]
    three = write(tmp_path / "three", lines[:30], lines[30:45], lines[45:])
    random = dict(split="random", ratios=[0.6, 0.2, 0.2], seed=4)
    _, expected = build(source(three, **random), tmp_path / "c")
    one = tmp_path / "one"
    one.mkdir()
    (one / "all.libfm").write_text("".join(x + "\n" for x in lines))
    two = write(tmp_path / "two", lines[:45], [], lines[45:])
    (two / FILES["valid"]).unlink()
    for root, files in [(one, {"train": "all.libfm", "valid": None, "test": None}),
                        (two, {"train": FILES["train"], "test": FILES["test"]})]:  # fmt: skip
        fm, got = build(source(root, files=files, **random), tmp_path / "c")
        assert fm.split_sizes == {"train": 36, "valid": 12, "test": 12}
        assert fm.extra["lines_read"] == ({"train": 60} if root == one else {"train": 45, "test": 15})
        for s in SPLITS:
            np.testing.assert_array_equal(got[s].ids, expected[s].ids, err_msg=f"{root.name} {s}")
            np.testing.assert_array_equal(got[s].labels, expected[s].labels, err_msg=f"{root.name} {s}")


def _numbered_rows(n: int) -> list[str]:
    """Line i: user i % 5, movie 10 + i % 8 (the pair names the line, for i < 40), tag 20."""
    return [row("1" if i % 3 else "-1", i % 5, 10 + i % 8, 20) for i in range(n)]


def _line_numbers(splits: dict) -> dict[str, list[int]]:
    """Each split's rows as line numbers (min_count 1: user u has id u + 1, movie 10 + m has id m + 1)."""
    line = {(i % 5 + 1, i % 8 + 1): i for i in range(40)}
    return {s: [line[a, b] for a, b in splits[s].ids[:, :2].tolist()] for s in SPLITS}


@pytest.mark.parametrize("split", ["random", "given"])
def test_a_skipped_line_moves_no_other_line(tmp_path, split):
    """A line's split, and its place among the split's rows, depend only on the seed, the number of lines and
    its line number in the pooled files (train, valid, test): replacing line k by a malformed one
    (on_bad_line=skip) gives every split of the all-good files less line k. The former reader drew the split
    (or, for given, the train order) over the good lines only, so one bad line reshuffled every split."""
    rows = _numbered_rows(40)
    how = dict(split=split, ratios=[0.6, 0.2, 0.2], seed=3)
    expected = _line_numbers(build(source(write(tmp_path / "good", rows[:24], rows[24:32], rows[32:]), **how),
                                   tmp_path / "c")[1])  # fmt: skip
    assert sorted(sum(expected.values(), [])) == list(range(40))
    if split == "given":
        assert expected["valid"] == list(range(24, 32)) and expected["test"] == list(range(32, 40))
    for k in (5, 26, 35):  # a line of the train, the valid and the test file
        bad = [row("2", 0, 10, 20) if i == k else r for i, r in enumerate(rows)]
        root = write(tmp_path / f"bad{k}", bad[:24], bad[24:32], bad[32:])
        fm, splits = build(source(root, on_bad_line="skip", **how), tmp_path / "c")
        assert fm.extra["bad_lines_skipped"] == 1
        assert _line_numbers(splits) == {s: [i for i in lines if i != k] for s, lines in expected.items()}


def test_fewer_files_name_what_is_missing(tmp_path):
    root = write(tmp_path / "d", TRAIN, VALID, TEST)
    with pytest.raises(ValueError, match=r"split = 'given' needs a train, a valid and a test file, but "
                       r"data\.source\.files\.valid, data\.source\.files\.test is null or absent; "
                       r"data\.source\.split=random"):  # fmt: skip
        source(root, files={"train": FILES["train"], "valid": None})
    with pytest.raises(ValueError, match=r"names no file: set at least one of \['train', 'valid', 'test'\]"):
        source(root, split="random", files={"train": None})
    (root / FILES["valid"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"files\.valid = .*' is not a file .*with data\.source\.split="
                       r"random, data\.source\.files\.valid=null for a release without it"):  # fmt: skip
        cache.prepare(source(root, split="random"), tmp_path / "c")


def test_num_rows_keeps_a_proportional_prefix_of_each_file(tmp_path):
    lines = [row("1" if i % 2 else "-1", i % 9, 100 + i % 4, 200 + i % 3) for i in range(100)]
    root = write(tmp_path / "d", lines[:70], lines[70:90], lines[90:])
    fm, splits = build(source(root, num_rows=50), tmp_path / "c")
    assert fm.split_sizes == {"train": 35, "valid": 10, "test": 5}
    assert fm.description.startswith("MovieLens-tag libFM files in d/ (first 50 rows, given split), dpn recipe")
    np.testing.assert_array_equal(splits["valid"].labels, [float(i % 2) for i in range(70, 80)])


def test_paper_facts_are_checked_on_full_reads(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        fm, _ = build(source(write(tmp_path / "d", TRAIN, VALID, TEST)), tmp_path / "c")
    assert "11 rows and 20 distinct indices, but MovieLens-tag has 2006859 rows and 90445 features" in caplog.text
    assert fm.extra["paper"] == {"dataset": "MovieLens-tag", "instances": 2006859, "features": 90445}


def test_cache_is_deterministic_and_keyed_by_the_files(tmp_path):
    root = write(tmp_path / "d", TRAIN, VALID, TEST)
    a = cache.prepare(source(root), tmp_path / "c1")
    b = cache.prepare(source(root), tmp_path / "c2")
    assert a.name == b.name and cache.prepare(source(root), tmp_path / "c1") == a
    for name in sorted(p.name for p in a.glob("*.npy")):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "feature_map.json").read_text()) == json.loads((b / "feature_map.json").read_text())
    with (root / FILES["test"]).open("a") as fh:
        fh.write(row("1", 0, 10, 20) + "\n")
    changed = cache.prepare(source(root), tmp_path / "c1")
    assert changed != a and cache.load(changed)[0].split_sizes["test"] == 3
    assert cache.prepare(source(root, min_count=2), tmp_path / "c1") not in (a, changed)


def test_config_errors_name_the_key(tmp_path):
    root = write(tmp_path / "d", TRAIN, VALID, TEST)
    with pytest.raises(ValueError, match=r"data\.source\.recipe = 'afn' is not one of \['dpn', 'nfm'\]"):
        source(root, recipe="afn")
    with pytest.raises(ValueError, match=r"data\.source\.split = 'kfold'"):
        source(root, split="kfold")
    with pytest.raises(ValueError, match=r"data\.source\.ratios"):
        source(root, split="random", ratios=[0.8, 0.2])
    with pytest.raises(ValueError, match=r"data\.source\.files has keys \['validation'\]: allowed keys are"):
        source(root, files=FILES | {"validation": "x"})
    with pytest.raises(FileNotFoundError, match=r"files\.valid = .*ml-tag\.validation\.libfm' is not a file"):
        (root / FILES["valid"]).unlink()
        cache.prepare(source(root), tmp_path / "c")


def test_hydra_configs_build_the_sources(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name, recipe, num_fields, prefix in [
            ("movielens_tag", "dpn", 3, "ml-tag"),
            ("frappe", "nfm", 10, "frappe"),
        ]:
            cfg = compose("train", overrides=[f"data={name}", f"data.source.root={tmp_path}", "data.num_rows=100"])
            src = instantiate(cfg.data.source)
            assert isinstance(src, LibFMSource) and src.recipe == recipe and src.split == "given"
            assert len(src.fields) == num_fields and src.num_rows == 100 and src.min_count == 1
            assert src.paths["valid"] == tmp_path / f"{prefix}.validation.libfm"
            assert cfg.data.paper_dataset == name
        fewer = ["data.source.split=random", "data.source.files.train=all.libfm", "data.source.files.valid=null",
                 "~data.source.files.test"]  # fmt: skip
        cfg = compose("train", overrides=["data=frappe", f"data.source.root={tmp_path}", *fewer])
        assert instantiate(cfg.data.source).paths == {"train": tmp_path / "all.libfm"}


FRAPPE_SIZES = [957, 4082, 7, 7, 2, 3, 2, 9, 80, 233]  # NFM's data/frappe/README.txt, cnt left out


def write_frappe_like(root: Path, rows: dict[str, int], seed: int = 0) -> Path:
    """Rows in Frappe's real layout: 10 indices, one per field in ascending contiguous ranges (5,382 in all),
    labels -1/1 with a user x item signal."""
    rng = np.random.default_rng(seed)
    starts = np.cumsum([0, *FRAPPE_SIZES[:-1]])
    root.mkdir(parents=True, exist_ok=True)
    for s, n in rows.items():
        local = np.stack([rng.integers(0, min(k, 40), n) for k in FRAPPE_SIZES], axis=1)
        y = np.where((local[:, 0] % 2 == 0) == (local[:, 1] % 3 == 0), 1, -1)
        lines = [f"{label} " + " ".join(f"{i}:1" for i in r) for label, r in zip(y, local + starts, strict=True)]
        (root / f"frappe.{s}.libfm").write_text("\n".join(lines) + "\n")
    return root


def test_train_entry_point_end_to_end_on_frappe_layout(tmp_path):
    root = write_frappe_like(tmp_path / "frappe", {"train": 1400, "validation": 400, "test": 200})
    metrics = train_cli(tmp_path, "data=frappe", f"data.source.root={root}", "model=lr", "data.batch_size=256")
    assert metrics["status"] == "completed" and metrics["paper_dataset"] == "frappe"
    assert metrics["split_sizes"] == {"train": 1400, "valid": 400, "test": 200}
    assert metrics["global_step"] == 6  # ceil(1400 / 256) batches
    assert 0.0 <= metrics["test/auc"] <= 1.0 and np.isfinite(metrics["test/logloss"])
    fm = FeatureMap.load(next((tmp_path / "cache" / "frappe").glob("*/feature_map.json")))
    assert [f.name for f in fm.fields][:3] == ["user", "item", "daytime"] and fm.num_fields == 10
    assert fm.extra["index_ranges"]["city"][0] >= 5149 and fm.extra["index_ranges"]["user"][1] <= 956
