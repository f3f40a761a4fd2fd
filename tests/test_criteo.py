"""The Criteo reader and its recipes: exact ids on hand-written rows, agreement with a slow direct
implementation, splits, malformed lines, cache keys, and the real sample (skipped when absent)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ctrlab.data import cache
from ctrlab.data.criteo import COLUMNS, FIELDS, INT_FIELDS, CriteoSource, count_positive_lines
from ctrlab.data.schema import SPLITS
from ctrlab.data.tabular import count_lines, line_chunks, line_uniforms, open_text
from ctrlab.models.deepfm import DeepFM
from tests.helpers import ROOT, SHARED_DATA, fit_and_auc
from tests.rawgen import benchmark_recipe, write_criteo_like

SAMPLE = SHARED_DATA / "criteo_sample" / "train.txt"
DYNINT = dict(split=[0.7, 0.1, 0.2], valid_fraction_of_train=None, numeric_transform="log1p_square")
OPTINTER = dict(split=[0.8, 0.2], valid_fraction_of_train=0.1, numeric_transform=None)
AIM = dict(split=[0.8, 0.2], valid_fraction_of_train=0.1, numeric_transform="equal_frequency")
RECIPE = {"dynint": DYNINT, "dpn": DYNINT, "optinter": OPTINTER, "aim": AIM}


def source(path: Path, recipe: str = "dynint", **overrides) -> CriteoSource:
    cfg = dict(
        name="test_criteo",
        path=str(path),
        recipe=recipe,
        num_rows=None,
        min_count=1,
        on_bad_line="error",
        chunk_rows=16,
        seed=0,
        **RECIPE.get(recipe, DYNINT),
    )
    cfg.update(overrides)
    return CriteoSource(**cfg)


def line(label: str = "0", ints: dict | None = None, cats: dict | None = None) -> str:
    """One raw line: every cell empty unless given, e.g. ``line("1", {"I1": "3"}, {"C1": "68fd1e64"})``."""
    cells = {c: "" for c in COLUMNS} | {"label": label} | (ints or {}) | (cats or {})
    return "\t".join(cells[c] for c in COLUMNS)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(s + "\n" for s in lines))
    return path


def build(src: CriteoSource, root: Path):
    return cache.load(cache.prepare(src, root))


# --------------------------------------------------------------------------------------------- dynint


I1_RAW = ["-1", "0", "1", "2", "3", "4", "5", "10", "100", "1000", "", "-3"]
LINE_OF_ROW = np.random.default_rng(0).permutation(len(I1_RAW))  # with split [1, 0, 0]: train row k = line


def test_dynint_default_buckets_exact_ids(tmp_path):
    """log1p_square (the authors' code): v >= 0 -> floor(ln(v^2 + 1)): 0, 1 -> 0; 2 -> 1; 3, 4 -> 2; 5 -> 3;
    10 -> 4; 100 -> 9; 1000 -> 13; negatives keep their own category. Ids 1..V ascending, empty -> 0."""
    path = write(tmp_path / "t.txt", [line("0", {"I1": v}) for v in I1_RAW])
    fm, splits = build(source(path, split=[1.0, 0.0, 0.0]), tmp_path / "c")
    # categories in order: -3, -1, b0 (0, 1), b1 (2), b2 (3, 4), b3 (5), b4 (10), b9 (100), b13 (1000)
    expected = dict(zip(I1_RAW, [2, 3, 3, 4, 5, 5, 6, 7, 8, 9, 0, 1], strict=True))
    assert fm.fields[0].name == "I1" and fm.fields[0].vocab_size == 11  # 9 categories + missing + OOV
    assert fm.split_sizes == {"train": 12, "valid": 0, "test": 0}
    assert splits["train"].ids[:, 0].tolist() == [expected[I1_RAW[i]] for i in LINE_OF_ROW]
    assert (splits["train"].ids[:, 1:] == 0).all()  # every other cell is empty
    assert fm.vocab_sizes[1:] == [2] * 38  # nothing kept: only missing + OOV
    assert fm.extra["numeric_transform"] == "log1p_square"


def test_dynint_winners_transform_log_squared(tmp_path):
    """log_squared: v <= 2 keeps its own category; v > 2 -> floor(ln(v)^2): 3, 4 -> 1; 5 -> 2; 10 -> 5;
    100 -> 21; 1000 -> 47."""
    path = write(tmp_path / "t.txt", [line("0", {"I1": v}) for v in I1_RAW])
    fm, splits = build(source(path, split=[1.0, 0.0, 0.0], numeric_transform="log_squared"), tmp_path / "c")
    # categories in order: -3, -1, 0, 1, 2, b1 (3, 4), b2 (5), b5 (10), b21 (100), b47 (1000)
    expected = dict(zip(I1_RAW, [2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 0, 1], strict=True))
    assert fm.fields[0].vocab_size == 12  # 10 categories + missing + OOV
    assert splits["train"].ids[:, 0].tolist() == [expected[I1_RAW[i]] for i in LINE_OF_ROW]
    assert fm.extra["numeric_transform"] == "log_squared"
    # where the two differ beyond v <= 2: 9 and 10 share floor(ln(v^2 + 1)) = 4 but not floor(ln(v)^2) = 4, 5
    path = write(tmp_path / "u.txt", [line("0", {"I1": v}) for v in ["9", "10"]])
    default = build(source(path, split=[1.0, 0.0, 0.0]), tmp_path / "d")[0]
    squared = build(source(path, split=[1.0, 0.0, 0.0], numeric_transform="log_squared"), tmp_path / "e")[0]
    assert (default.vocab_sizes[0], squared.vocab_sizes[0]) == (3, 4)


def test_min_count_and_unseen_values_are_oov(tmp_path):
    """A value seen < min_count times in train is OOV; so is a value seen only in valid/test."""
    n = 40
    # C1: "aaaaaaaa" on every line (kept), "rare0001" on one line (below min_count 2 -> OOV wherever it is)
    cats = [{"C1": "aaaaaaaa"} for _ in range(n)]
    cats[5] = {"C1": "rare0001"}
    # C2: a value per line, each seen once: kept (min_count 1) when the line is in train, else OOV
    for i in range(n):
        cats[i]["C2"] = f"{i:08x}"
    path = write(tmp_path / "t.txt", [line(str(i % 2), {"I1": "1"}, cats[i]) for i in range(n)])
    fm, splits = build(source(path, min_count=2), tmp_path / "c2")
    c1 = FIELDS.index("C1")
    assert fm.fields[c1].vocab_size == 3  # "aaaaaaaa" -> 1, OOV -> 2
    all_c1 = np.concatenate([splits[s].ids[:, c1] for s in SPLITS])
    assert sorted(all_c1.tolist()) == [1] * (n - 1) + [2]
    # with min_count 1: C2 is kept for exactly the train lines, and OOV in valid/test
    fm, splits = build(source(path, min_count=1), tmp_path / "c1")
    c2 = FIELDS.index("C2")
    n_train = fm.split_sizes["train"]
    assert fm.fields[c2].vocab_size == n_train + 2
    assert sorted(splits["train"].ids[:, c2].tolist()) == list(range(1, n_train + 1))
    for s in ("valid", "test"):
        assert (splits[s].ids[:, c2] == fm.fields[c2].oov_id).all()


def test_train_rows_are_a_seeded_shuffle(tmp_path):
    """Train row k is line ``default_rng(seed).permutation(n)[k]`` (with split [1, 0, 0], every line)."""
    n = 50
    path = write(tmp_path / "t.txt", [line("0", None, {"C1": f"{i:08x}"}) for i in range(n)])
    fm, splits = build(source(path, seed=7, split=[1.0, 0.0, 0.0]), tmp_path / "c")
    order = splits["train"].ids[:, FIELDS.index("C1")] - 1  # C1's ids follow the value order = line order
    assert sorted(order.tolist()) == list(range(n))
    assert order.tolist() != list(range(n))
    np.testing.assert_array_equal(order, np.random.default_rng(7).permutation(n))


# --------------------------------------------------------------------------------------------- optinter


def test_optinter_minmax_values(tmp_path):
    """x -> (x - min) / (max - min) with the train range; id 1 when present, 0 (value 0.0) when empty."""
    # min and max twice each, so that the one valid row cannot take either out of the train split
    i1 = ["-2", "-2", "6", "6", "0", "2", "", "4", "1", "3"]
    path = write(tmp_path / "t.txt", [line("0", {"I1": v}, {"C1": "abcd0123"}) for v in i1])
    fm, splits = build(source(path, "optinter", split=[1.0, 0.0]), tmp_path / "c")
    assert fm.has_values and fm.split_sizes == {"train": 9, "valid": 1, "test": 0}
    assert [f.kind for f in fm.fields] == ["numeric"] * 13 + ["categorical"] * 26
    assert fm.vocab_sizes[:13] == [3] * 13
    assert fm.extra["numeric_min"]["I1"] == -2 and fm.extra["numeric_max"]["I1"] == 6
    ids = np.concatenate([splits["train"].ids, splits["valid"].ids])
    values = np.concatenate([splits["train"].values, splits["valid"].values])
    expected = sorted((int(v) + 2) / 8 if v else 0.0 for v in i1)
    np.testing.assert_allclose(sorted(values[:, 0].tolist()), expected, rtol=1e-6)
    assert sorted(ids[:, 0].tolist()) == sorted(int(v != "") for v in i1)
    assert (values[:, 1:13] == 0).all() and (ids[:, 1:13] == 0).all()  # empty numeric fields
    assert (values[:, 13:] == 1.0).all()  # categorical fields carry 1.0


def test_optinter_clips_values_outside_the_train_range(tmp_path):
    n = 10
    test_lines = np.random.default_rng(0).permutation(n)[8:]  # split [0.8, 0.2]: the last 20% are test
    i1 = [str(i) for i in range(n)]
    i1[test_lines[0]], i1[test_lines[1]] = "1000", "-1000"
    path = write(tmp_path / "t.txt", [line("0", {"I1": v}) for v in i1])
    fm, splits = build(source(path, "optinter"), tmp_path / "c")
    assert fm.split_sizes["test"] == 2
    assert sorted(splits["test"].values[:, 0].tolist()) == [0.0, 1.0]
    lo, hi = fm.extra["numeric_min"]["I1"], fm.extra["numeric_max"]["I1"]
    assert 0 <= lo < hi <= 9  # the train range knows nothing of the test lines
    train_valid = np.concatenate([splits["train"].values[:, 0], splits["valid"].values[:, 0]])
    assert train_valid.min() == 0.0 and train_valid.max() == 1.0


# --------------------------------------------------------------------------------------------- reference


def reference(
    path: Path, recipe: str, transform: str | None, min_count: int, seed: int
) -> tuple[dict[str, dict[str, np.ndarray]], list]:
    """The recipes written plainly, row by row, over the whole file in memory (slow; test sizes only).
    Returns the arrays of each split and the vocabulary sizes."""
    rows = [s.split("\t") for s in path.read_text().splitlines()]
    n = len(rows)
    pos = np.empty(n, dtype=np.int64)
    pos[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    if recipe == "dynint":
        bounds = [0, round(0.7 * n), round(0.7 * n) + round(0.1 * n), n]
    else:
        n_tv = round(0.8 * n)
        bounds = [0, n_tv - round(0.1 * n_tv), n_tv, n]
    split_of = [next(i for i in range(3) if pos[r] < bounds[i + 1]) for r in range(n)]

    def token(field: str, cell: str):
        if cell == "":
            return None
        if field in INT_FIELDS and transform == "log1p_square":
            v = int(cell)
            return math.floor(math.log(v * v + 1)) if v >= 0 else v
        if field in INT_FIELDS and transform == "log_squared":
            v = int(cell)
            return v if v <= 2 else math.floor(math.log(v) ** 2) + 2
        return int(cell) if field in INT_FIELDS else cell

    tokens = [[token(f, r[1 + j]) for j, f in enumerate(FIELDS)] for r in rows]
    train = [r for r in range(n) if split_of[r] == 0]
    out = {s: {"ids": np.zeros((bounds[i + 1] - bounds[i], 39), np.int32)} for i, s in enumerate(SPLITS)}
    for s in SPLITS:
        out[s]["labels"] = np.zeros(len(out[s]["ids"]), np.float32)
        out[s]["values"] = np.ones((len(out[s]["ids"]), 39), np.float32)
    vocab_sizes = []
    for j, f in enumerate(FIELDS):
        numeric = recipe == "optinter" and f in INT_FIELDS
        seen = [tokens[r][j] for r in train if tokens[r][j] is not None]
        vocab = {v: k + 1 for k, v in enumerate(sorted(v for v, c in Counter(seen).items() if c >= min_count))}
        lo, hi = (min(seen), max(seen)) if seen else (0, 0)
        vocab_sizes.append(3 if numeric else len(vocab) + 2)
        for r in range(n):
            s, dest, t = SPLITS[split_of[r]], pos[r] - bounds[split_of[r]], tokens[r][j]
            out[s]["labels"][dest] = float(rows[r][0])
            if numeric:
                out[s]["ids"][dest, j] = int(t is not None)
                x = 0.0 if t is None else min(max((t - lo) / max(hi - lo, 1), 0.0), 1.0)
                out[s]["values"][dest, j] = x
            else:
                out[s]["ids"][dest, j] = 0 if t is None else vocab.get(t, len(vocab) + 1)
    return out, vocab_sizes


@pytest.mark.parametrize(
    "recipe,transform", [("dynint", "log1p_square"), ("dynint", "log_squared"), ("optinter", None)]
)
@pytest.mark.parametrize("chunk_rows", [97, 100_000])
def test_matches_the_plain_reference(tmp_path, recipe, transform, chunk_rows):
    """Streaming, vectorised build == the row-by-row reference, whatever the chunk size."""
    path = tmp_path / "raw.txt"
    write_criteo_like(path, 1500, seed=1)
    src = source(path, recipe, min_count=3, chunk_rows=chunk_rows, seed=5, numeric_transform=transform)
    fm, splits = build(src, tmp_path / "c")
    ref, vocab_sizes = reference(path, recipe, transform, min_count=3, seed=5)
    assert fm.vocab_sizes == vocab_sizes
    for s in SPLITS:
        np.testing.assert_array_equal(splits[s].ids, ref[s]["ids"], err_msg=s)
        np.testing.assert_array_equal(splits[s].labels, ref[s]["labels"], err_msg=s)
        if recipe == "optinter":
            np.testing.assert_allclose(splits[s].values, ref[s]["values"], rtol=1e-6, err_msg=s)
    assert (splits["test"].ids[:, 13:] == np.array(vocab_sizes[13:]) - 1).any()  # OOV happens


# --------------------------------------------------------------------------------------------- splits


def test_split_sizes_and_num_rows(tmp_path):
    path = tmp_path / "raw.txt"
    write_criteo_like(path, 1000, seed=2)
    fm, _ = build(source(path, chunk_rows=300), tmp_path / "a")
    assert fm.split_sizes == {"train": 700, "valid": 100, "test": 200}
    assert fm.description == "Criteo raw.txt (all 1,000 rows), dynint recipe"
    fm, _ = build(source(path, "optinter", chunk_rows=300), tmp_path / "b")
    assert fm.split_sizes == {"train": 720, "valid": 80, "test": 200}
    fm, splits = build(source(path, num_rows=333, chunk_rows=100), tmp_path / "c")
    assert fm.split_sizes == {"train": 233, "valid": 33, "test": 67}
    assert fm.description == "Criteo raw.txt (first 333 rows), dynint recipe"
    assert sum(len(splits[s]) for s in SPLITS) == 333


@pytest.mark.parametrize("tail", [b"", b"\n"])
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_line_chunks_keep_every_line(tmp_path, tail, chunk_rows):
    body = b"a\tb\n\nc\r\nd" + tail  # an empty line, a CRLF line, maybe no final newline
    path = tmp_path / "x.txt"
    path.write_bytes(body)
    n = count_lines(path, None)
    assert n == 4
    chunks = list(line_chunks(path, chunk_rows, n))
    assert b"".join(c for _, _, c in chunks) == b"a\tb\n\nc\r\nd\n"
    assert [first for first, _, _ in chunks] == list(range(0, n, chunk_rows))
    assert [k for _, k, c in chunks] == [c.count(b"\n") for _, _, c in chunks]
    assert b"".join(c for _, _, c in line_chunks(path, chunk_rows, count_lines(path, 2))) == b"a\tb\n\n"


def test_line_chunks_across_read_blocks(tmp_path):
    path = write_criteo_like(tmp_path / "x.txt", 2000, seed=0)  # ~470 KB: several 64-256 KB reads a chunk
    body = path.read_bytes()
    for chunk_rows in (333, 1000, 1999):
        chunks = list(line_chunks(path, chunk_rows, 2000))
        assert b"".join(c for _, _, c in chunks) == body
        assert [k for _, k, _ in chunks] == [min(chunk_rows, 2000 - f) for f in range(0, 2000, chunk_rows)]
        assert all(c.count(b"\n") == k for _, k, c in chunks)


# --------------------------------------------------------------------------------------------- bad lines


GOOD = line("1", {"I1": "5", "I2": "-1"}, {"C1": "68fd1e64"})
BAD_LINES = [
    ("\t".join(GOOD.split("\t")[:39]), "column C26: 39 tab-separated columns, expected 40"),
    (GOOD + "\textra", "column 41: 41 tab-separated columns, expected 40"),
    ("", "column label: empty line"),
    (GOOD.replace("1", "2", 1), "column label: '2' is not 0 or 1"),
    ("\t" + GOOD[2:], "column label: '' is not 0 or 1"),
    (line("0", {"I5": "abc"}), "column I5: 'abc' is not an integer"),
    (line("0", {"I13": "1.5"}), "column I13: '1.5' is not an integer"),
    (line("0", None, {"C3": "ab\x00cd"}), "contains a NUL byte"),
]


@pytest.mark.parametrize("bad,message", BAD_LINES)
def test_malformed_line_names_file_line_and_column(tmp_path, bad, message):
    path = write(tmp_path / "bad.txt", [GOOD, GOOD, bad, GOOD])
    with pytest.raises(ValueError) as err:
        cache.prepare(source(path, chunk_rows=2), tmp_path / "c")
    assert f"bad.txt line 3, {message}" in str(err.value) or f"bad.txt line 3: {message}" in str(err.value)
    assert not list((tmp_path / "c").glob("*/*"))  # nothing half-built is left behind


def test_skip_drops_counts_and_reports_bad_lines(tmp_path, caplog):
    lines = [GOOD] * 20
    for i, (bad, _) in enumerate(BAD_LINES):
        lines[2 * i + 1] = bad
    path = write(tmp_path / "bad.txt", lines)
    with caplog.at_level(logging.WARNING):
        fm, splits = build(source(path, on_bad_line="skip", chunk_rows=3), tmp_path / "c")
    assert fm.extra["bad_lines_skipped"] == len(BAD_LINES)
    assert sum(fm.split_sizes.values()) == 20 - len(BAD_LINES)
    assert all(len(splits[s]) == fm.split_sizes[s] for s in SPLITS)
    assert (np.concatenate([splits[s].labels for s in SPLITS]) == 1.0).all()  # only GOOD lines are left
    assert "skipped 8 malformed lines" in caplog.text and "bad.txt line 2, column C26" in caplog.text
    assert fm.extra["bad_line_examples"][1].startswith(f"{path} line 4, column 41")
    assert "8 malformed lines skipped" in fm.description


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data\.source\.path = .*missing\.txt' is not a file"):
        cache.prepare(source(tmp_path / "missing.txt"), tmp_path / "c")
    path = write(tmp_path / "t.txt", [GOOD])
    with pytest.raises(
        ValueError, match=r"data\.source\.recipe = 'deepfm' is not one of \['dynint', 'optinter', 'aim', 'dpn'\]"
    ):
        source(path, recipe="deepfm")
    with pytest.raises(ValueError, match=r"data\.source\.on_bad_line = 'warn' is not one of \['error', 'skip'\]"):
        source(path, on_bad_line="warn")
    with pytest.raises(ValueError, match="data=criteo_optinter"):
        source(path, recipe="optinter", split=[0.7, 0.1, 0.2])
    allowed = r"is not one of \['log1p_square', 'log_squared'\]"
    with pytest.raises(ValueError, match=r"data\.source\.numeric_transform = 'log_of_square' " + allowed):
        source(path, numeric_transform="log_of_square")


# --------------------------------------------------------------------------------------------- cache


def test_changed_raw_file_gives_a_new_cache_folder(tmp_path):
    path = tmp_path / "raw.txt"
    write_criteo_like(path, 200, seed=0)
    first = cache.prepare(source(path, chunk_rows=64), tmp_path / "c")
    assert cache.prepare(source(path, chunk_rows=1000), tmp_path / "c") == first  # chunking is not in the key
    with path.open("a") as fh:
        fh.write(GOOD + "\n")
    second = cache.prepare(source(path, chunk_rows=1000), tmp_path / "c")
    assert second != first and cache.load(second)[0].split_sizes["train"] == 141
    assert cache.prepare(source(path, min_count=5, chunk_rows=1000), tmp_path / "c") not in (first, second)
    squared = cache.prepare(source(path, numeric_transform="log_squared", chunk_rows=1000), tmp_path / "c")
    assert squared not in (first, second)  # the transform is in the key: a changed default gives a new cache


def test_hydra_configs_build_the_source(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name, recipe, split in [
            ("criteo", "dynint", [0.7, 0.1, 0.2]),
            ("criteo_optinter", "optinter", [0.8, 0.2]),
        ]:
            cfg = compose("train", overrides=[f"data={name}", "data.num_rows=100", f"data.source.path={tmp_path}/x"])
            src = instantiate(cfg.data.source)
            assert isinstance(src, CriteoSource) and src.recipe == recipe and src.split == split
            assert src.num_rows == 100 and src.min_count == 20
            assert src.numeric_transform == {"criteo": "log1p_square", "criteo_optinter": None}[name]


def test_write_criteo_like_has_the_quirks(tmp_path):
    path = write_criteo_like(tmp_path / "x.txt", 3000, seed=0)
    rows = [s.split("\t") for s in path.read_text().splitlines()]
    assert len(rows) == 3000 and {len(r) for r in rows} == {40}
    labels = np.array([int(r[0]) for r in rows])
    assert 0.18 < labels.mean() < 0.32
    ints = [r[1:14] for r in rows]
    assert any(c == "" for r in ints for c in r) and any(c.startswith("-") for r in ints for c in r)
    assert max(int(c) for r in ints for c in r if c) > 10**5
    cats = [c for r in rows for c in r[14:]]
    assert "" in cats and all(len(c) in (0, 8) for c in cats)


# --------------------------------------------------------------------------------------------- dpn


def test_dpn_is_dynints_transform_with_its_own_split(tmp_path):
    """dpn buckets numeric fields with a transform of dynint's: with dynint's split and transform the arrays are
    the same bytes; with its own 7:2:1 the split sizes follow."""
    path = write_criteo_like(tmp_path / "raw.txt", 1000, seed=4)
    a = cache.prepare(source(path, "dynint", min_count=3, chunk_rows=300), tmp_path / "a")
    b = cache.prepare(source(path, "dpn", min_count=3, chunk_rows=300), tmp_path / "b")
    for name in sorted(p.name for p in a.glob("*.npy")):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    fm, _ = build(source(path, "dpn", split=[0.7, 0.2, 0.1], min_count=10), tmp_path / "c")
    assert fm.split_sizes == {"train": 700, "valid": 200, "test": 100}
    assert fm.description == "Criteo raw.txt (all 1,000 rows), dpn recipe"


# --------------------------------------------------------------------------------------------- aim


def write_days(folder: Path, days: dict[int, list[str]]) -> Path:
    folder.mkdir()
    for day, lines in days.items():
        write(folder / f"day_{day}", lines)
    return folder


def day_lines(day: int, n: int, clicks: list[int]) -> list[str]:
    """``n`` lines of one day: C1 ``d<day>_<i>`` names the line, I1 counts up, labels cycle ``clicks``."""
    return [line(str(clicks[i % len(clicks)]), {"I1": str(i)}, {"C1": f"d{day}_{i:04d}"}) for i in range(n)]


AIM_DAYS = dict(train_days=[6, 7, 8], test_day=9, negative_downsampling=None, min_count=1)
AIM_BALANCED = AIM_DAYS | dict(train_days=[6, 7], test_day=8, negative_downsampling="balance")


def test_aim_day_files_split_by_day(tmp_path):
    """Days 6-8 are train + valid (valid a random 25% of their lines), day 9 is the test split in file
    order; a day file that is not named stays out."""
    days = {d: day_lines(d, 40 + d, [1, 0, 0, 1, 0]) for d in (6, 7, 8, 9)}
    days[10] = day_lines(10, 30, [1])
    folder = write_days(tmp_path / "days", days)
    fm, splits = build(source(folder, "aim", valid_fraction_of_train=0.25, **AIM_DAYS), tmp_path / "c")
    n_train_valid = 46 + 47 + 48
    assert fm.split_sizes == {"train": n_train_valid - 35, "valid": 35, "test": 49}
    assert splits["test"].labels.tolist() == [float([1, 0, 0, 1, 0][i % 5]) for i in range(49)]  # file order
    c1 = FIELDS.index("C1")
    assert fm.fields[c1].vocab_size == n_train_valid - 35 + 2  # one kept value per train line
    assert sorted(splits["train"].ids[:, c1].tolist()) == list(range(1, n_train_valid - 35 + 1))
    for s in ("valid", "test"):  # their C1 values are never seen in train
        assert (splits[s].ids[:, c1] == fm.fields[c1].oov_id).all()
    assert fm.extra["files"] == ["day_6", "day_7", "day_8", "day_9"] and fm.extra["lines_downsampled"] == 0
    assert fm.description == "Criteo 1TB logs days/: days [6, 7, 8] train+valid, day 9 test (all 190 rows), aim recipe"
    fm, splits = build(source(folder, "aim", valid_fraction_of_train=0.25, num_rows=10, **AIM_DAYS), tmp_path / "d")
    assert fm.split_sizes == {"train": 22, "valid": 8, "test": 10} and fm.description.endswith(
        "(40 rows, at most 10 a day), aim recipe"
    )


def test_aim_balance_downsamples_negatives_per_file(tmp_path):
    """Every positive is kept; a negative is kept when its line's hash draw is below positives / negatives
    of its file; the draws do not depend on the chunking."""
    days = {6: day_lines(6, 300, [1, 0, 0, 0, 0]), 7: day_lines(7, 200, [1, 0]), 8: day_lines(8, 250, [1, 0, 0, 0])}
    folder = write_days(tmp_path / "days", days)
    src = source(
        folder, "aim", **(AIM_DAYS | {"train_days": [6, 7], "test_day": 8, "negative_downsampling": "balance"})
    )
    fm, splits = build(src, tmp_path / "a")
    rates = {"day_6": 60 / 240, "day_7": 1.0, "day_8": 63 / 187}
    assert fm.extra["negative_keep_rate"] == pytest.approx(rates)
    expected_kept, first = 0, 0
    for (day, lines), rate in zip(days.items(), rates.values(), strict=True):
        labels = np.array([int(s[0]) for s in lines])
        draws = line_uniforms(0, first, len(lines))
        kept = (labels == 1) | (draws < rate)
        expected_kept += int(kept.sum())
        if day == 8:
            assert splits["test"].labels.tolist() == labels[kept].astype(float).tolist()
        first += len(lines)
    assert sum(fm.split_sizes.values()) == expected_kept == 750 - fm.extra["lines_downsampled"]
    labels = np.concatenate([splits[s].labels for s in SPLITS])
    assert labels.sum() == 60 + 100 + 63 and 0.4 < labels.mean() < 0.6  # every positive; ~50% overall
    again = cache.prepare(source(folder, "aim", chunk_rows=1000, **AIM_BALANCED), tmp_path / "b")
    first_folder = cache.prepare(src, tmp_path / "a")
    for name in sorted(p.name for p in first_folder.glob("*.npy")):
        assert (first_folder / name).read_bytes() == (again / name).read_bytes(), name


def test_count_positive_lines_reads_the_label_column(tmp_path):
    path = write(tmp_path / "t.txt", [line("1"), line("0"), "", "1", "10\tx", line("1"), line("0")])
    assert count_positive_lines(open_text(path, header=False, max_lines=None)) == 2
    assert count_positive_lines(open_text(path, header=False, max_lines=1)) == 1


def test_aim_equal_frequency_buckets(tmp_path):
    """I1 = the line's index, 125 lines, buckets of min_count = 10 train rows: the 90 train values in
    ascending order fill 9 buckets of 10; a valid/test value falls in the bucket of its range (no OOV)."""
    n = 125
    path = write(tmp_path / "t.txt", [line(str(i % 2), {"I1": str(i), "I2": "5"}) for i in range(n)])
    fm, splits = build(source(path, "aim", min_count=10, negative_downsampling=None), tmp_path / "c")
    assert fm.split_sizes == {"train": 90, "valid": 10, "test": 25}
    assert fm.vocab_sizes[:2] == [9 + 2, 1 + 2]  # buckets + missing + OOV; I2 has one value: one bucket
    perm = np.random.default_rng(0).permutation(n)  # row k of train, valid, test is line perm[k], [90 + k], ...
    ends = np.sort(perm[:90])[9:80:10]  # the largest value of buckets 1..8; bucket 9 takes the rest
    for s, lines in [("train", perm[:90]), ("valid", perm[90:100]), ("test", perm[100:])]:
        assert splits[s].ids[:, 0].tolist() == (1 + np.searchsorted(ends, lines, side="left")).tolist(), s
    assert np.bincount(splits["train"].ids[:, 0]).tolist() == [0] + [10] * 9
    assert fm.extra["numeric_transform"] == "equal_frequency"


def test_aim_kaggle_fallback_and_config_errors(tmp_path):
    path = write_criteo_like(tmp_path / "raw.txt", 1000, seed=2)
    fm, _ = build(source(path, "aim", negative_downsampling=None, chunk_rows=300), tmp_path / "a")
    assert fm.split_sizes == {"train": 720, "valid": 80, "test": 200} and fm.extra["lines_downsampled"] == 0
    assert fm.description == "Criteo raw.txt (all 1,000 rows), aim recipe"
    with pytest.raises(ValueError, match="train_days and data.source.test_day are set together"):
        source(path, "aim", train_days=[6])
    with pytest.raises(ValueError, match="must be non-empty and leave out test_day = 7"):
        source(path, "aim", train_days=[6, 7], test_day=7)
    with pytest.raises(ValueError, match="recipe dynint reads one file without sampling"):
        source(path, "dynint", negative_downsampling="balance")
    with pytest.raises(ValueError, match=r"negative_downsampling = 'half' is not one of \[None, 'balance'\]"):
        source(path, "aim", negative_downsampling="half")
    with pytest.raises(ValueError, match=r"numeric_transform = None is not one of"):
        source(path, "aim", numeric_transform=None)
    folder = write_days(tmp_path / "days", {6: [GOOD], 7: [GOOD]})
    with pytest.raises(ValueError, match="is a folder: day files are read by recipe aim"):
        cache.prepare(source(folder, "dynint"), tmp_path / "c")
    with pytest.raises(FileNotFoundError, match=r"day_8 is not a file"):
        cache.prepare(source(folder, "aim", train_days=[6, 7], test_day=8), tmp_path / "c")


def test_aim_and_dpn_configs(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        aim = instantiate(compose("train", overrides=["data=criteo_aim", f"data.source.path={tmp_path}"]).data.source)
        dpn = instantiate(compose("train", overrides=["data=criteo_dpn", f"data.source.path={tmp_path}/x"]).data.source)
    assert aim.recipe == "aim" and aim.train_days == [6, 7, 8, 9, 10, 11, 12] and aim.test_day == 13
    assert aim.numeric_transform == "equal_frequency" and aim.negative_downsampling == "balance"
    assert aim.min_count == 20 and aim.split == [0.8, 0.2] and aim.by_day  # tmp_path is a folder
    assert dpn.recipe == "dpn" and dpn.split == [0.7, 0.2, 0.1] and dpn.min_count == 10
    assert dpn.numeric_transform == "log_squared"  # AutoInt's, not dynint's default
    assert dpn.train_days is None and dpn.test_day is None and dpn.negative_downsampling is None  # aim's keys


# --------------------------------------------------------------------------------------------- real sample


needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason=f"real Criteo sample not found at {SAMPLE}")


@needs_sample
@pytest.mark.parametrize("recipe", ["dynint", "optinter"])
def test_real_sample_builds(tmp_path, recipe):
    fm, splits = build(source(SAMPLE, recipe, min_count=20, chunk_rows=3000, seed=2022), tmp_path / "c")
    assert [f.name for f in fm.fields] == FIELDS and fm.num_fields == 39
    assert sum(fm.split_sizes.values()) == 8000
    expected = {
        "dynint": {"train": 5600, "valid": 800, "test": 1600},
        "optinter": {"train": 5760, "valid": 640, "test": 1600},
    }
    assert fm.split_sizes == expected[recipe]
    labels = np.concatenate([splits[s].labels for s in SPLITS])
    assert abs(labels.mean() - 0.216) < 0.005  # the sample's click rate (21.6%)
    for s in SPLITS:
        assert splits[s].ids.shape == (fm.split_sizes[s], 39)
        assert (splits[s].ids >= 0).all() and (splits[s].ids < np.array(fm.vocab_sizes)).all()
    train = splits["train"].ids
    assert (train[:, 13:] == 0).any() and (train[:, 13:] == np.array(fm.vocab_sizes[13:]) - 1).any()  # missing, OOV
    if recipe == "optinter":
        assert fm.has_values and (splits["train"].values[:, :13].max(axis=0) == 1.0).all()
    assert fm.description == f"Criteo train.txt (all 8,000 rows), {recipe} recipe"


@needs_sample
def test_deepfm_learns_on_the_real_sample(tmp_path):
    fm, splits = build(source(SAMPLE, min_count=20, chunk_rows=8000, seed=2022), tmp_path / "c")
    model = DeepFM(fm, embedding_dim=8, embedding_init_std=1e-4, mlp_hidden=[64, 64], mlp_dropout=0.0, mlp_norm="none")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread, and a busy machine can't slow it 10x
    try:
        auc = fit_and_auc(model, splits, epochs=2, lr=3e-3, batch_size=256)
    finally:
        torch.set_num_threads(threads)
    assert auc > 0.6, f"test AUC {auc:.4f}"


@pytest.mark.slow
def test_benchmark_recipe_reports_speed_and_memory(tmp_path):
    result = benchmark_recipe("optinter", 5000, tmp_path)
    assert result["split_sizes"] == {"train": 3600, "valid": 400, "test": 1000}
    assert result["rows_per_s"] > 0 and result["peak_rss_mb"] > result["baseline_rss_mb"] > 0


@needs_sample
def test_real_sample_aim_balanced(tmp_path):
    src = source(SAMPLE, "aim", min_count=20, negative_downsampling="balance", chunk_rows=3000, seed=2022)
    fm, splits = build(src, tmp_path / "c")
    labels = np.concatenate([splits[s].labels for s in SPLITS])
    assert labels.sum() == round(0.216 * 8000) and abs(labels.mean() - 0.5) < 0.03
    assert fm.extra["lines_downsampled"] == 8000 - len(labels)
    for j in range(13):  # I1..I13 in equal-frequency buckets: >= 20 train rows each but the last, no OOV
        buckets = fm.vocab_sizes[j] - 2
        counts = np.bincount(splits["train"].ids[:, j], minlength=buckets + 1)
        assert len(counts) == buckets + 1 and (counts[1:buckets] >= 20).all() and counts[buckets] > 0, FIELDS[j]
    assert fm.vocab_sizes[4] > 50  # I5 has many distinct counts
