"""The Avazu reader: exact ids on hand-written rows (with and without the header), time fields, splits and
thresholds, malformed lines, cache determinism, the recipe configs, and the real sample (skipped when
absent)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ctrlab.data import cache
from ctrlab.data.avazu import CATEGORICAL, COLUMNS, HEADER, AvazuSource
from ctrlab.data.schema import SPLITS
from ctrlab.models.fm import FM
from ctrlab.models.lr import LR
from tests.helpers import ROOT, SHARED_DATA, fit_and_auc

SAMPLE = SHARED_DATA / "avazu_sample" / "train.csv"
SAMPLE_HEADERLESS = SHARED_DATA / "avazu_sample" / "test.csv"


def source(path: Path, **overrides) -> AvazuSource:
    cfg = dict(
        name="test_avazu",
        path=str(path),
        recipe="dynint",
        num_rows=None,
        raw_hour=False,
        time_fields=[],
        min_count=1,
        split=[0.7, 0.1, 0.2],
        valid_fraction_of_train=None,
        on_bad_line="error",
        chunk_rows=16,
        seed=0,
    )
    cfg.update(overrides)
    return AvazuSource(**cfg)


def row(click: str = "0", hour: str = "14102100", **cells: str) -> str:
    """One raw line: every categorical cell empty unless given, e.g. ``row("1", site_id="1fbe01fe")``."""
    values = {c: "" for c in COLUMNS} | {"id": "10000", "click": click, "hour": hour} | cells
    return ",".join(values[c] for c in COLUMNS)


def write(path: Path, lines: list[str], header: bool = True) -> Path:
    path.write_text("".join(s + "\n" for s in ([HEADER.decode()] if header else []) + lines))
    return path


def build(src: AvazuSource, root: Path):
    return cache.load(cache.prepare(src, root))


ALL_TRAIN = dict(split=[1.0, 0.0, 0.0])
SITES = ["b", "a", "c", "a", "", "b", "a", "c", "", "d"]
LINE_OF_ROW = np.random.default_rng(0).permutation(len(SITES))  # with split [1, 0, 0]: train row k = line


# --------------------------------------------------------------------------------------------- ids


@pytest.mark.parametrize("header", [True, False])
def test_exact_ids_with_and_without_header(tmp_path, header):
    """Kept values get ids 1..V in value order; an empty cell is 0; every other field is empty here."""
    path = write(tmp_path / "t.csv", [row(str(i % 2), site_id=s) for i, s in enumerate(SITES)], header)
    fm, splits = build(source(path, **ALL_TRAIN), tmp_path / "c")
    assert [f.name for f in fm.fields] == CATEGORICAL and fm.num_fields == 21
    assert fm.extra["header"] is header and fm.split_sizes == {"train": 10, "valid": 0, "test": 0}
    site = CATEGORICAL.index("site_id")
    expected = {"": 0, "a": 1, "b": 2, "c": 3, "d": 4}
    assert fm.fields[site].vocab_size == 6  # 4 values + missing + OOV
    assert splits["train"].ids[:, site].tolist() == [expected[SITES[i]] for i in LINE_OF_ROW]
    assert splits["train"].labels.tolist() == [float(i % 2) for i in LINE_OF_ROW]
    assert (np.delete(splits["train"].ids, site, axis=1) == 0).all()


def test_header_and_headerless_files_give_the_same_cache_arrays(tmp_path):
    lines = [row(str(int(i % 3 == 0)), C1=str(1000 + i % 4), device_ip=f"ip{i % 7}") for i in range(60)]
    a = build(source(write(tmp_path / "a.csv", lines, True), min_count=2), tmp_path / "a")
    b = build(source(write(tmp_path / "b.csv", lines, False), min_count=2), tmp_path / "b")
    assert a[0].fields == b[0].fields and a[0].split_sizes == b[0].split_sizes
    for s in SPLITS:
        np.testing.assert_array_equal(a[1][s].ids, b[1][s].ids)
        np.testing.assert_array_equal(a[1][s].labels, b[1][s].labels)


def test_time_fields_and_raw_hour(tmp_path):
    """day = YYMMDD, hour_of_day = HH, weekday 1..7 (2014-10-21 is a Tuesday: 2; 10-25 Saturday: 6; 10-30
    Thursday: 4), each a categorical field with ids in token order; the raw hour is one too."""
    hours = ["14102100", "14102523", "14103012", "14102100"]
    path = write(tmp_path / "t.csv", [row("0", h) for h in hours])
    fm, splits = build(
        source(path, raw_hour=True, time_fields=["weekday", "day", "hour_of_day"], **ALL_TRAIN), tmp_path / "c"
    )
    names = [f.name for f in fm.fields]
    assert names == ["hour", *CATEGORICAL, "weekday", "day", "hour_of_day"] and fm.num_fields == 25
    ids = splits["train"].ids[np.argsort(np.random.default_rng(0).permutation(4))]  # back to line order
    cols = {n: ids[:, names.index(n)].tolist() for n in ("hour", "weekday", "day", "hour_of_day")}
    assert cols["hour"] == [1, 2, 3, 1]  # 14102100 < 14102523 < 14103012
    assert cols["weekday"] == [1, 3, 2, 1]  # "2" (Tue) < "4" (Thu) < "6" (Sat)
    assert cols["day"] == [1, 2, 3, 1]  # 141021 < 141025 < 141030
    assert cols["hour_of_day"] == [1, 3, 2, 1]  # "00" < "12" < "23"
    assert [fm.vocab_sizes[names.index(n)] for n in ("hour", "weekday", "day", "hour_of_day")] == [5] * 4


# --------------------------------------------------------------------------------------------- splits


def test_split_sizes_min_count_and_unseen_values(tmp_path):
    """A value seen < min_count times in train is OOV; so is a value seen only in valid/test."""
    n = 100
    apps = ["aaaa"] * n
    apps[7] = "rare"
    lines = [row(str(i % 2), app_id=apps[i], device_id=f"d{i:03d}") for i in range(n)]
    path = write(tmp_path / "t.csv", lines)
    fm, splits = build(source(path, min_count=2), tmp_path / "a")
    assert fm.split_sizes == {"train": 70, "valid": 10, "test": 20}
    app, dev = CATEGORICAL.index("app_id"), CATEGORICAL.index("device_id")
    assert fm.fields[app].vocab_size == 3  # "aaaa" -> 1, "rare" -> OOV 2
    assert sorted(np.concatenate([splits[s].ids[:, app] for s in SPLITS]).tolist()) == [1] * (n - 1) + [2]
    assert fm.fields[dev].vocab_size == 2  # every device_id is seen once: all OOV at min_count 2
    fm, splits = build(source(path, min_count=1, split=[0.8, 0.2], valid_fraction_of_train=0.1), tmp_path / "b")
    assert fm.split_sizes == {"train": 72, "valid": 8, "test": 20}
    assert sorted(splits["train"].ids[:, dev].tolist()) == list(range(1, 73))  # kept for exactly the train lines
    for s in ("valid", "test"):
        assert (splits[s].ids[:, dev] == fm.fields[dev].oov_id).all()
    fm, _ = build(source(path, num_rows=50), tmp_path / "c")
    assert fm.split_sizes == {"train": 35, "valid": 5, "test": 10}
    assert fm.description == "Avazu t.csv (first 50 rows), dynint recipe"


def test_cache_is_deterministic_and_keyed(tmp_path):
    hours = [f"1410{21 + i % 9}{i % 24:02d}" for i in range(300)]
    lines = [row(str(int(i % 5 == 0)), h, site_id=f"s{i % 13}", device_ip=f"ip{i % 29}") for i, h in enumerate(hours)]
    path = write(tmp_path / "t.csv", lines)
    cfg = dict(min_count=2, time_fields=["day", "weekday"])
    first = cache.prepare(source(path, chunk_rows=7, **cfg), tmp_path / "a")
    again = cache.prepare(source(path, chunk_rows=1000, **cfg), tmp_path / "b")
    assert first.name == again.name  # chunking is not in the key ...
    for name in sorted(p.name for p in first.glob("*.npy")):  # ... and does not change a byte
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert (first / "feature_map.json").read_text() == (again / "feature_map.json").read_text()
    assert cache.prepare(source(path, chunk_rows=7, seed=1, **cfg), tmp_path / "a") != first
    assert (
        cache.prepare(source(path, chunk_rows=7, min_count=3, time_fields=["day", "weekday"]), tmp_path / "a") != first
    )


# --------------------------------------------------------------------------------------------- bad lines


GOOD = row("1", site_id="1fbe01fe", C14="15706")
BAD_LINES = [
    (",".join(GOOD.split(",")[:23]), "column C21: 23 comma-separated columns, expected 24"),
    (GOOD + ",extra", "column 25: 25 comma-separated columns, expected 24"),
    ("", "column id: empty line, expected 24 comma-separated columns"),
    (row("2"), "column click: '2' is not 0 or 1"),
    (row(""), "column click: '' is not 0 or 1"),
    (row("0", "1410210"), "column hour: '1410210' is not a YYMMDDHH time"),
    (row("0", "1410210a"), "column hour: '1410210a' is not a YYMMDDHH time"),
    (row("0", "14102124"), "column hour: '14102124' is not a YYMMDDHH time"),
    (row("0", "14023012"), "column hour: '14023012' is not a YYMMDDHH time"),  # no February 30th
    (row("0", ""), "column hour: '' is not a YYMMDDHH time"),
    (row("0", site_id="ab\x00cd"), "contains a NUL byte"),
]


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("bad,message", BAD_LINES)
def test_malformed_line_names_file_line_and_column(tmp_path, bad, message, header):
    path = write(tmp_path / "bad.csv", [GOOD, GOOD, bad, GOOD], header)
    line = 3 + header  # the header is line 1
    with pytest.raises(ValueError) as err:
        cache.prepare(source(path, chunk_rows=2), tmp_path / "c")
    assert f"bad.csv line {line}, {message}" in str(err.value) or f"bad.csv line {line}: {message}" in str(err.value)
    assert not list((tmp_path / "c").glob("*/*"))  # nothing half-built is left behind


def test_skip_drops_counts_and_reports_bad_lines(tmp_path, caplog):
    lines = [GOOD] * 30
    for i, (bad, _) in enumerate(BAD_LINES):
        lines[2 * i + 1] = bad
    path = write(tmp_path / "bad.csv", lines)
    with caplog.at_level(logging.WARNING):
        fm, splits = build(source(path, on_bad_line="skip", chunk_rows=3), tmp_path / "c")
    assert fm.extra["bad_lines_skipped"] == len(BAD_LINES)
    assert sum(fm.split_sizes.values()) == 30 - len(BAD_LINES)
    assert all(len(splits[s]) == fm.split_sizes[s] for s in SPLITS)
    assert (np.concatenate([splits[s].labels for s in SPLITS]) == 1.0).all()  # only GOOD lines are left
    assert "skipped 11 malformed lines" in caplog.text and "bad.csv line 3, column C21" in caplog.text
    assert fm.extra["bad_line_examples"][1].startswith(f"{path} line 5, column 25")
    assert "11 malformed lines skipped" in fm.description


def test_a_header_that_is_not_avazus_is_an_error(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("id,click,hour,C1\n" + GOOD + "\n")
    with pytest.raises(
        ValueError, match=r"h\.csv line 1: header 'id,click,hour,C1', expected 'id,click,hour,C1,banner"
    ):
        cache.prepare(source(path), tmp_path / "c")


def test_config_errors_name_the_key(tmp_path):
    path = write(tmp_path / "t.csv", [GOOD])
    with pytest.raises(FileNotFoundError, match=r"data\.source\.path = .*missing\.csv' is not a file"):
        cache.prepare(source(tmp_path / "missing.csv"), tmp_path / "c")
    with pytest.raises(
        ValueError, match=r"data\.source\.recipe = 'deepfm' is not one of \['dynint', 'optinter', 'aim', 'dpn'\]"
    ):
        source(path, recipe="deepfm")
    with pytest.raises(ValueError, match=r"data\.source\.time_fields\[\] = 'month' is not one of"):
        source(path, time_fields=["month"])
    with pytest.raises(ValueError, match=r"takes valid_fraction_of_train = null"):
        source(path, valid_fraction_of_train=0.1)
    with pytest.raises(ValueError, match=r"takes 0 < valid_fraction_of_train < 1"):
        source(path, split=[0.8, 0.2])
    with pytest.raises(ValueError, match=r"AVAZU=/path/to/train\.csv"):
        source("???")


# --------------------------------------------------------------------------------------------- configs


RECIPE_CONFIGS = {  # config -> (recipe, fields, min_count, split)
    "avazu": ("dynint", 21, 20, [0.7, 0.1, 0.2]),
    "avazu_optinter": ("optinter", 24, 5, [0.8, 0.2]),
    "avazu_aim": ("aim", 24, 20, [0.8, 0.2]),
    "avazu_dpn": ("dpn", 22, 5, [0.7, 0.2, 0.1]),
}


def compose_source(name: str, path: Path, *overrides: str) -> AvazuSource:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={name}", f"data.source.path={path}", *overrides])
    return instantiate(cfg.data.source)


@pytest.mark.parametrize("name", list(RECIPE_CONFIGS))
def test_recipe_configs_build_the_source(tmp_path, name):
    recipe, num_fields, min_count, split = RECIPE_CONFIGS[name]
    src = compose_source(name, tmp_path / "x", "data.num_rows=100")
    assert isinstance(src, AvazuSource) and src.recipe == recipe and src.num_rows == 100
    assert src.min_count == min_count and src.split == split
    assert len(src.fields()) == num_fields


# --------------------------------------------------------------------------------------------- real sample


needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason=f"real Avazu sample not found at {SAMPLE}")


@needs_sample
@pytest.mark.parametrize("name", list(RECIPE_CONFIGS))
def test_real_sample_builds_with_every_recipe(tmp_path, name):
    recipe, num_fields, _, split = RECIPE_CONFIGS[name]
    fm, splits = build(compose_source(name, SAMPLE, "data.source.chunk_rows=3000"), tmp_path / "c")
    assert fm.num_fields == num_fields and fm.extra["header"] is True and sum(fm.split_sizes.values()) == 8999
    assert fm.split_sizes["test"] == round(split[-1] * 8999)
    labels = np.concatenate([splits[s].labels for s in SPLITS])
    assert abs(labels.mean() - 0.174) < 0.005  # the sample's click rate (17.4%)
    for s in SPLITS:
        assert (splits[s].ids >= 0).all() and (splits[s].ids < np.array(fm.vocab_sizes)).all()
    oov = np.array(fm.vocab_sizes) - 1
    assert (splits["test"].ids == oov).any()  # rare and unseen values happen
    assert fm.description == f"Avazu train.csv (all 8,999 rows), {recipe} recipe"


@needs_sample
def test_headerless_real_rows_build(tmp_path):
    fm, _ = build(source(SAMPLE_HEADERLESS, min_count=2, chunk_rows=300), tmp_path / "c")
    assert fm.extra["header"] is False and sum(fm.split_sizes.values()) == 1000


@needs_sample
@pytest.mark.parametrize("model", ["lr", "fm"])
def test_lr_and_fm_learn_on_the_real_sample(tmp_path, model):
    fm, splits = build(compose_source("avazu_optinter", SAMPLE, "data.source.chunk_rows=9000"), tmp_path / "c")
    net = LR(fm) if model == "lr" else FM(fm, embedding_dim=8, embedding_init_std=1e-2)
    auc = fit_and_auc(net, splits, epochs=3, lr=1e-2, batch_size=256)
    assert auc > 0.62, f"{model} test AUC {auc:.4f}"
