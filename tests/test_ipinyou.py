"""The iPinYou reader: both formats on hand-written rows (derivations, missing values, FNN's ``other``),
agreement with a plain row-by-row reference and between the formats, thresholds, splits, malformed rows,
cache keys, and the real FNN-encoded sample (skipped when absent)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ctrlab.data import cache
from ctrlab.data.ipinyou import FIELDS, RAW_HEADER, IPinYouSource
from ctrlab.data.schema import SPLITS
from ctrlab.models.fm import FM
from ctrlab.models.lr import LR
from tests.helpers import ROOT, SHARED_DATA, fit_and_auc

SAMPLE = SHARED_DATA / "ipinyou_sample"
DYNINT = dict(recipe="dynint", split=[0.7, 0.1, 0.2], valid_fraction_of_train=None)
OPTINTER = dict(recipe="optinter", split=[0.8, 0.2], valid_fraction_of_train=0.1)
ALL_TRAIN = dict(split=[1.0, 0.0, 0.0])  # every row in train, in the order default_rng(seed).permutation(n)


def source(root: Path, fmt: str = "raw", recipe: str = "dynint", **overrides) -> IPinYouSource:
    cfg = dict(
        name="test_ipinyou",
        root=str(root),
        format=fmt,
        parts=None,
        num_rows=None,
        min_count=1,
        on_bad_line="error",
        chunk_rows=4,
        seed=0,
        **(DYNINT if recipe == "dynint" else OPTINTER),
    )
    cfg.update(recipe=recipe, **overrides)
    return IPinYouSource(**cfg)


def build(src: IPinYouSource, root: Path):
    return cache.load(cache.prepare(src, root))


# --------------------------------------------------------------------------------------------- writers

RAW_DEFAULTS = {c: f"{c}_x" for c in RAW_HEADER} | {
    "click": "0", "weekday": "3", "hour": "09", "useragent": "windows_ie", "IP": "1.2.3.*", "region": "80",
    "city": "85", "adexchange": "2", "domain": "dom1", "slotid": "slot1", "slotwidth": "300",
    "slotheight": "250", "slotvisibility": "FirstView", "slotformat": "Na", "slotprice": "5",
    "creative": "cr1", "advertiser": "2997", "usertag": "10006,10024",
}  # fmt: skip
DERIVED_DEFAULTS = {f: RAW_DEFAULTS[f] for f in FIELDS} | {"slotprice": "1-10"}


def raw_row(**cells: str) -> str:
    """One train.log.txt row: ``RAW_DEFAULTS`` unless given, e.g. ``raw_row(click="1", IP="1.2.3.4")``."""
    return "\t".join((RAW_DEFAULTS | cells)[c] for c in RAW_HEADER)


def write_raw(folder: Path, train: list[str], test: list[str]) -> Path:
    """make-ipinyou-data's two files; test rows get its two extra columns (nclick, nconversation)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "\t".join(RAW_HEADER)
    (folder / "train.log.txt").write_text(header + "\n" + "".join(r + "\n" for r in train))
    (folder / "test.log.txt").write_text(header + "\tnclick\tnconversation\n" + "".join(r + "\t0\t0\n" for r in test))
    return folder


def write_fm(folder: Path, train: list[tuple[str, dict]], test: list[tuple[str, dict]], seed: int = 0) -> Path:
    """The FNN encoding of rows given as ``(label, {field: derived value})`` (a field left out takes
    ``DERIVED_DEFAULTS``): a featindex with shuffled index numbers, tokens in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = [(label, DERIVED_DEFAULTS | values) for label, values in train + test]
    features = sorted({f"{f}:{v}" for _, values in rows for f, v in values.items()} | {"city:never_used"})
    numbers = rng.permutation(len(features)) + 3
    index = dict(zip(features, numbers.tolist(), strict=True))
    (folder / "featindex.fm.txt").write_text("".join(f"{k}\t{i}\n" for k, i in index.items()))

    def line(label: str, values: dict) -> str:
        tokens = [f"{index[f'{f}:{values[f]}']}:1" for f in FIELDS]
        return " ".join([label, *[tokens[k] for k in rng.permutation(len(FIELDS))]])

    (folder / "train.fm.txt").write_text("".join(line(*r) + "\n" for r in rows[: len(train)]))
    (folder / "test.fm.txt").write_text("".join(line(*r) + "\n" for r in rows[len(train) :]))
    return folder


def decode(fm, splits, split: str = "train") -> list[dict[str, int]]:
    return [dict(zip(FIELDS, row.tolist(), strict=True)) for row in splits[split].ids]


# --------------------------------------------------------------------------------------------- raw derivations

# (raw cells, the derived values make-ipinyou-data's encoder would give)
DERIVATION_ROWS = [
    ({"useragent": "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.1 Chrome/21.0 Safari/537.1"},
     {"useragent": "windows_chrome"}),
    ({"useragent": "windows_ie"}, {"useragent": "windows_ie"}),  # make-ipinyou-data's form stays as it is
    ({"useragent": "android_safari"}, {"useragent": "android_safari"}),
    ({"useragent": ""}, {"useragent": "other_other"}),
    ({"useragent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/15.0"}, {"useragent": "linux_firefox"}),
    ({"IP": "115.45.195.117"}, {"IP": "115.45.195.*"}),
    ({"IP": "null"}, {"IP": None}),
    ({"slotprice": "0"}, {"slotprice": "0"}),
    ({"slotprice": "10"}, {"slotprice": "1-10"}),
    ({"slotprice": "11"}, {"slotprice": "11-50"}),
    ({"slotprice": "50"}, {"slotprice": "11-50"}),
    ({"slotprice": "51"}, {"slotprice": "51-100"}),
    ({"slotprice": "100"}, {"slotprice": "51-100"}),
    ({"slotprice": "101"}, {"slotprice": "101+"}),
    ({"slotprice": "null"}, {"slotprice": None}),
    ({"domain": "null", "adexchange": ""}, {"domain": None, "adexchange": None}),
    ({"click": "1", "weekday": "0", "hour": "23"}, {"weekday": "0", "hour": "23"}),
]  # fmt: skip


def _expected_ids(rows: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """ids of derived rows with min_count 1, everything in train: kept values 1..V in string order."""
    vocab = {f: sorted({r[f] for r in rows if r[f] is not None}) for f in FIELDS}
    ids = [{f: 0 if r[f] is None else vocab[f].index(r[f]) + 1 for f in FIELDS} for r in rows]
    return ids, {f: len(v) + 2 for f, v in vocab.items()}


def test_raw_derivations_exact_ids(tmp_path):
    """useragent -> os_browser, IP masked, slotprice bucketed, empty/null -> 0, ids in value order."""
    train = [raw_row(**cells) for cells, _ in DERIVATION_ROWS[:10]]
    test = [raw_row(**cells) for cells, _ in DERIVATION_ROWS[10:]]
    fm, splits = build(source(write_raw(tmp_path / "d", train, test), **ALL_TRAIN), tmp_path / "c")
    derived = [DERIVED_DEFAULTS | d for _, d in DERIVATION_ROWS]
    expected, vocab_sizes = _expected_ids(derived)
    order = np.random.default_rng(0).permutation(len(derived))  # train and test files pooled, in that order
    assert decode(fm, splits) == [expected[i] for i in order]
    assert fm.vocab_sizes == [vocab_sizes[f] for f in FIELDS]
    assert splits["train"].labels.tolist() == [float(DERIVATION_ROWS[i][0].get("click") == "1") for i in order]
    assert [f.name for f in fm.fields] == FIELDS and fm.num_fields == 16
    assert fm.extra["clicks"] == {"train": 1, "valid": 0, "test": 0} and fm.extra["advertisers"] == ["2997"]


def test_fm_format_gives_the_same_arrays_as_raw(tmp_path):
    """The FNN encoding of the same rows, through a shuffled featindex, decodes to exactly the same cache."""
    cells = [c for c, _ in DERIVATION_ROWS]
    derived = [DERIVED_DEFAULTS | d for _, d in DERIVATION_ROWS]
    as_fm = [(c.get("click", "0"), {f: "null" if v is None else v for f, v in d.items()}) for c, d in
             zip(cells, derived, strict=True)]  # fmt: skip
    for split in ([0.5, 0.2, 0.3], "given"):
        extra = {"valid_fraction_of_train": 0.3} if split == "given" else {}
        raw = write_raw(tmp_path / "r", [raw_row(**c) for c in cells[:11]], [raw_row(**c) for c in cells[11:]])
        raw_src = source(raw, split=split, seed=3, **extra)
        fm_src = source(write_fm(tmp_path / "f", as_fm[:11], as_fm[11:]), "fm", split=split, seed=3, **extra)
        fm_r, raw_splits = build(raw_src, tmp_path / "c")
        fm_f, fm_splits = build(fm_src, tmp_path / "c")
        assert fm_r.vocab_sizes == fm_f.vocab_sizes and fm_r.split_sizes == fm_f.split_sizes
        for s in SPLITS:
            np.testing.assert_array_equal(raw_splits[s].ids, fm_splits[s].ids, err_msg=f"{split} {s}")
            np.testing.assert_array_equal(raw_splits[s].labels, fm_splits[s].labels, err_msg=f"{split} {s}")


def test_fm_other_is_oov_and_empty_values_are_missing(tmp_path):
    """field:other (FNN's own OOV bucket) -> our OOV id however often it occurs; field:null, field: -> 0."""
    rows = [("0", {"domain": "other", "city": "null", "slotid": ""}) for _ in range(5)]
    rows += [("1", {"domain": "d7", "city": "c1", "slotid": "s9"}) for _ in range(3)]
    fm, splits = build(source(write_fm(tmp_path / "f", rows, []), "fm", **ALL_TRAIN), tmp_path / "c")
    got = decode(fm, splits)
    domain_oov = fm.fields[FIELDS.index("domain")].oov_id
    assert fm.vocab_sizes[FIELDS.index("domain")] == 3  # only d7 is kept
    assert sorted((r["domain"], r["city"], r["slotid"]) for r in got) == [(1, 1, 1)] * 3 + [(domain_oov, 0, 0)] * 5


def test_parts_with_their_own_featindexes_pool_by_value(tmp_path):
    """Two advertiser folders, each with its own index numbering, give the cache of one folder holding both."""
    a = [("0", {"advertiser": "1458", "domain": f"d{i % 3}"}) for i in range(6)]
    b = [("1", {"advertiser": "3358", "domain": f"d{i % 4}"}) for i in range(5)]
    write_fm(tmp_path / "top" / "1458", a[:4], a[4:], seed=1)
    write_fm(tmp_path / "top" / "3358", b[:3], b[3:], seed=2)
    write_fm(tmp_path / "one", a[:4] + b[:3], a[4:] + b[3:], seed=3)
    fm_p, parts = build(source(tmp_path / "top", "fm", parts=[1458, 3358], **ALL_TRAIN), tmp_path / "c")
    fm_o, one = build(source(tmp_path / "one", "fm", **ALL_TRAIN), tmp_path / "c")
    assert fm_p.vocab_sizes == fm_o.vocab_sizes and fm_p.extra["advertisers"] == ["1458", "3358"]
    # reading order differs (part by part vs train then test): compare the rows as multisets
    key = lambda s: sorted(map(tuple, np.column_stack([s["train"].ids, s["train"].labels]).tolist()))  # noqa: E731
    assert key(parts) == key(one)
    assert "top/{1458,3358}" in fm_p.description


# --------------------------------------------------------------------------------------------- reference


def random_raw(folder: Path, n_train: int, n_test: int, seed: int) -> Path:
    """Random rows with make-ipinyou-data's quirks: long-tailed values, null/empty cells, full user agents
    and IPs, slot prices across the buckets; ~10% clicks so that small tests see both labels."""
    rng = np.random.default_rng(seed)
    uas = ["windows_ie", "android_safari", "", "null", "Mozilla (Macintosh; Mac OS X) Safari",
           "Mozilla (iPad; CPU OS 6 like Mac OS X) Opera", "Mozilla (Windows NT) TheWorld MSIE",
           "other_other"]  # fmt: skip

    def row() -> str:
        cells = {f: f"{f[:2]}{int(rng.zipf(1.6)) % 40}" for f in FIELDS}
        cells["click"] = str(int(rng.random() < 0.1))
        cells["useragent"] = uas[rng.integers(len(uas))]
        ip = f"{rng.integers(3)}.{rng.integers(2)}.{rng.integers(4)}"
        cells["IP"] = [f"{ip}.{rng.integers(256)}", f"{ip}.*", "null"][rng.integers(3)]
        cells["slotprice"] = str(int(rng.integers(-2, 300))) if rng.random() < 0.9 else "null"
        for f in ("domain", "adexchange", "city"):
            if rng.random() < 0.15:
                cells[f] = ["null", ""][rng.integers(2)]
        return raw_row(**cells)

    return write_raw(folder, [row() for _ in range(n_train)], [row() for _ in range(n_test)])


def reference(folder: Path, min_count: int, seed: int, ratios: list[float]) -> tuple[dict, list[int]]:
    """The dynint recipe written plainly, row by row (slow; test sizes only): pooled files, seeded split."""

    def derive(cells: dict) -> dict:
        out = {f: None if cells[f] in ("", "null") else cells[f] for f in FIELDS}
        ua = cells["useragent"].lower()
        os_ = next((o for o in ("windows", "ios", "mac", "android", "linux") if o in ua), "other")
        br = next((b for b in ("chrome", "sogou", "maxthon", "safari", "firefox", "theworld", "opera", "ie")
                   if b in ua), "other")  # fmt: skip
        out["useragent"] = f"{os_}_{br}"
        if out["IP"] is not None and out["IP"].count(".") == 3 and not out["IP"].endswith("*"):
            out["IP"] = out["IP"].rsplit(".", 1)[0] + ".*"
        if out["slotprice"] is not None:
            p = int(out["slotprice"])
            out["slotprice"] = ("101+" if p > 100 else "51-100" if p > 50 else "11-50" if p > 10
                                else "1-10" if p > 0 else "0")  # fmt: skip
        return out

    rows = []
    for name in ("train.log.txt", "test.log.txt"):
        lines = (folder / name).read_text().splitlines()
        header = lines[0].split("\t")
        rows += [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    n = len(rows)
    order = np.random.default_rng(seed).permutation(n)
    bounds = [0, round(ratios[0] * n), round(ratios[0] * n) + round(ratios[1] * n), n]
    tokens = [derive(rows[i]) for i in order]
    counts = {f: Counter(t[f] for t in tokens[: bounds[1]] if t[f] is not None) for f in FIELDS}
    vocab = {f: {v: k + 1 for k, v in enumerate(sorted(v for v, c in counts[f].items() if c >= min_count))}
             for f in FIELDS}  # fmt: skip
    out = {}
    for i, s in enumerate(SPLITS):
        part = tokens[bounds[i] : bounds[i + 1]]
        out[s] = {
            "ids": np.array(
                [[0 if t[f] is None else vocab[f].get(t[f], len(vocab[f]) + 1) for f in FIELDS] for t in part],
                dtype=np.int32,
            ).reshape(-1, 16),
            "labels": np.array([float(rows[j]["click"]) for j in order[bounds[i] : bounds[i + 1]]], np.float32),
        }
    return out, [len(vocab[f]) + 2 for f in FIELDS]


@pytest.mark.parametrize("chunk_rows", [7, 100_000])
def test_matches_the_plain_reference(tmp_path, chunk_rows):
    folder = random_raw(tmp_path / "raw", 500, 200, seed=1)
    fm, splits = build(source(folder, min_count=3, chunk_rows=chunk_rows, seed=5), tmp_path / "c")
    ref, vocab_sizes = reference(folder, min_count=3, seed=5, ratios=[0.7, 0.1, 0.2])
    assert fm.vocab_sizes == vocab_sizes
    for s in SPLITS:
        np.testing.assert_array_equal(splits[s].ids, ref[s]["ids"], err_msg=s)
        np.testing.assert_array_equal(splits[s].labels, ref[s]["labels"], err_msg=s)
    oov = np.array(vocab_sizes) - 1
    assert (splits["test"].ids == oov).any() and (splits["train"].ids == oov).any()  # OOV happens
    assert (splits["train"].ids == 0).any()  # missing happens


# --------------------------------------------------------------------------------------------- thresholds


def test_min_count_and_unseen_values_are_oov(tmp_path):
    """Below min_count in train -> OOV; seen only in valid/test -> OOV; missing stays 0 whatever min_count."""
    n = 40
    rows = [raw_row(creative="common", slotid=f"s{i}", domain="null" if i % 4 == 0 else "dom") for i in range(n)]
    rows[5] = raw_row(creative="rare", slotid="s5", domain="dom")
    folder = write_raw(tmp_path / "d", rows[:30], rows[30:])
    fm, splits = build(source(folder, min_count=2), tmp_path / "c2")
    creative, slotid, domain = (FIELDS.index(f) for f in ("creative", "slotid", "domain"))
    assert fm.vocab_sizes[creative] == 3  # "common" -> 1, OOV -> 2
    every = np.concatenate([splits[s].ids for s in SPLITS])
    assert sorted(every[:, creative].tolist()) == [1] * (n - 1) + [2]
    assert (every[:, slotid] == fm.fields[slotid].oov_id).all()  # each slot id is seen once: below 2
    assert sorted(every[:, domain].tolist()) == [0] * 10 + [1] * 30
    fm, splits = build(source(folder, min_count=1), tmp_path / "c1")
    n_train = fm.split_sizes["train"]
    assert fm.vocab_sizes[slotid] == n_train + 2
    assert sorted(splits["train"].ids[:, slotid].tolist()) == list(range(1, n_train + 1))
    for s in ("valid", "test"):
        assert (splits[s].ids[:, slotid] == fm.fields[slotid].oov_id).all()
    fm, splits = build(source(folder, min_count=1000), tmp_path / "c1000")
    assert fm.vocab_sizes == [2] * 16 and fm.extra["num_values"] == 0
    assert sorted(np.concatenate([splits[s].ids[:, domain] for s in SPLITS]).tolist()) == [0] * 10 + [1] * 30


# --------------------------------------------------------------------------------------------- splits


def test_split_sizes_num_rows_and_given(tmp_path):
    folder = random_raw(tmp_path / "raw", 700, 300, seed=2)
    fm, _ = build(source(folder, chunk_rows=256), tmp_path / "a")
    assert fm.split_sizes == {"train": 700, "valid": 100, "test": 200}
    assert fm.description.endswith("(all rows: 1,000 rows), dynint recipe, random 70/10/20 split")
    fm, _ = build(source(folder, "raw", "optinter", chunk_rows=64), tmp_path / "b")
    assert fm.split_sizes == {"train": 720, "valid": 80, "test": 200}
    fm, splits = build(source(folder, num_rows=100, chunk_rows=30), tmp_path / "c")  # 100 rows of each file
    assert fm.split_sizes == {"train": 140, "valid": 20, "test": 40}
    assert fm.extra["files"][0]["rows"] == 100 and fm.extra["files"][1]["rows"] == 100
    # given: train/valid from train.log.txt only; test is test.log.txt in file order
    fm, splits = build(source(folder, split="given", valid_fraction_of_train=0.25, chunk_rows=256), tmp_path / "d")
    assert fm.split_sizes == {"train": 525, "valid": 175, "test": 300}
    lines = (folder / "test.log.txt").read_text().splitlines()[1:]
    assert splits["test"].labels.tolist() == [float(line[0]) for line in lines]
    train_clicks = sum(line[0] == "1" for line in (folder / "train.log.txt").read_text().splitlines()[1:])
    assert splits["train"].labels.sum() + splits["valid"].labels.sum() == train_clicks
    assert "given train/test split" in fm.description


def test_train_rows_are_a_seeded_shuffle_of_the_pooled_files(tmp_path):
    n = 30
    rows = [raw_row(slotid=f"s{i:02d}") for i in range(n)]  # slot id order = line order (train, then test)
    folder = write_raw(tmp_path / "d", rows[:20], rows[20:])
    fm, splits = build(source(folder, seed=7, **ALL_TRAIN), tmp_path / "c")
    order = splits["train"].ids[:, FIELDS.index("slotid")] - 1
    np.testing.assert_array_equal(order, np.random.default_rng(7).permutation(n))


def _numbered_rows(n: int) -> list[str]:
    """``n`` <= 40 rows whose line number i is written as slotid s<i mod 5> and creative c<i mod 8> (which
    determine i < 40), so that a few train lines see every value."""
    return [raw_row(slotid=f"s{i % 5}", creative=f"c{i % 8}") for i in range(n)]


def _line_numbers(fm, splits) -> dict[str, list[int]]:
    """Each split's rows as the 0-based line numbers (over train.log.txt's data lines, then test.log.txt's)
    of ``_numbered_rows``; every value must be kept in train (ids: s0..s4 -> 1..5, c0..c7 -> 1..8)."""
    slot, creative = FIELDS.index("slotid"), FIELDS.index("creative")
    assert fm.vocab_sizes[slot] == 5 + 2 and fm.vocab_sizes[creative] == 8 + 2
    line = {(i % 5 + 1, i % 8 + 1): i for i in range(40)}
    return {s: [line[a, b] for a, b in splits[s].ids[:, [slot, creative]].tolist()] for s in SPLITS}


@pytest.mark.parametrize("split", [[0.6, 0.2, 0.2], "given"])
def test_a_skipped_line_moves_no_other_line(tmp_path, split):
    """A line's split, and its place among the split's rows, depend only on the seed, the number of lines and
    its line number in the pooled files (train.log.txt's data lines, then test.log.txt's): replacing line k by
    a malformed one (on_bad_line=skip) gives every split of the all-good files less line k. (Deleting line k
    instead renumbers the lines after it and changes the line count the split is drawn over: no split by
    line number could leave the others in place then.)"""
    rows = _numbered_rows(40)
    extra = {"valid_fraction_of_train": 0.25} if split == "given" else {}
    good = source(write_raw(tmp_path / "good", rows[:24], rows[24:]), split=split, seed=3, **extra)
    expected = _line_numbers(*build(good, tmp_path / "c"))
    assert sorted(sum(expected.values(), [])) == list(range(40))
    if split == "given":
        assert expected["test"] == list(range(24, 40))
    for k in (5, 30):  # a line of train.log.txt, one of test.log.txt
        bad_rows = [raw_row(click="2") if i == k else r for i, r in enumerate(rows)]
        folder = write_raw(tmp_path / f"bad{k}", bad_rows[:24], bad_rows[24:])
        fm, splits = build(source(folder, split=split, seed=3, on_bad_line="skip", **extra), tmp_path / "c")
        assert fm.extra["bad_lines_skipped"] == 1
        assert _line_numbers(fm, splits) == {s: [i for i in lines if i != k] for s, lines in expected.items()}


# --------------------------------------------------------------------------------------------- bad rows

GOOD = raw_row()
RAW_BAD = [
    ("\t".join(GOOD.split("\t")[:20]), "column slotprice: 20 tab-separated columns, expected 27 (the header's)"),
    (GOOD + "\textra", "column 28: 28 tab-separated columns, expected 27"),
    ("", "column click: empty line"),
    (raw_row(click="2"), "column click: '2' is not 0 or 1"),
    (raw_row(click=""), "column click: '' is not 0 or 1"),
    (raw_row(slotprice="abc"), "column slotprice: 'abc' is not an integer"),
    (raw_row(domain="ab\x00cd"), "contains a NUL byte"),
]


@pytest.mark.parametrize("bad,message", RAW_BAD)
def test_raw_malformed_row_names_file_line_and_column(tmp_path, bad, message):
    folder = write_raw(tmp_path / "d", [GOOD, GOOD, bad, GOOD], [GOOD])
    with pytest.raises(ValueError) as err:
        cache.prepare(source(folder, chunk_rows=2), tmp_path / "c")
    where = f"{folder / 'train.log.txt'} line 4"  # the header is line 1
    assert f"{where}, {message}" in str(err.value) or f"{where}: {message}" in str(err.value)
    assert not list((tmp_path / "c").glob("*/*"))  # nothing half-built is left behind


def test_raw_header_must_name_the_columns(tmp_path):
    folder = write_raw(tmp_path / "d", [GOOD], [GOOD])
    text = (folder / "train.log.txt").read_text().replace("slotprice", "floorprice", 1)
    (folder / "train.log.txt").write_text(text)
    with pytest.raises(ValueError, match=r"train\.log\.txt line 1, column slotprice: not in the header"):
        cache.prepare(source(folder), tmp_path / "c")


FM_GOOD = ("0", {})


def _fm_bad_rows(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    """A folder with good rows, and the bad lines to try with the messages they must give."""
    folder = write_fm(tmp_path / "f", [FM_GOOD, ("1", {"domain": "dom2"})], [FM_GOOD])
    good = (folder / "test.fm.txt").read_text().strip()
    label, *tokens = good.split(" ")
    index = dict(line.split("\t") for line in (folder / "featindex.fm.txt").read_text().splitlines())
    by_field = {f: f"{index[f'{f}:{DERIVED_DEFAULTS[f]}']}:1" for f in FIELDS}
    no_price = [by_field[f] for f in FIELDS if f != "slotprice"]
    two_domains = [*no_price, f"{index['domain:dom2']}:1"]
    return (
        folder,
        [
            ("2 " + " ".join(tokens), "field label: '2' is not 0 or 1"),
            ("", "field label: empty line"),
            (" ".join(["0", *no_price]), "field slotprice: no index for it (15 indices, expected 16, one per field)"),
            (" ".join(["0", *tokens, f"{index['domain:dom2']}:1"]), "field domain: appears twice"),
            (" ".join(["0", *two_domains]), "field domain: appears twice"),
            (" ".join(["0", *tokens[:-1], "999999:1"]), "field ? (token 16): index 999999 is not in"),
            (" ".join(["0", *tokens[:-1], "1:1"]), "field ? (token 16): index 1 is not in"),  # a gap in the featindex
            (" ".join(["0", *tokens[:-1], tokens[-1][:-1] + "2"]), "field ? (token 16): '"),
            (" ".join(["0", *tokens[:-1], "abc"]), "field ? (token 16): 'abc' is not 'index:1'"),
            (good + " ", "field ? (token 17): '' is not 'index:1'"),
            (good.replace(" ", "\x00", 1), "contains a NUL byte"),
        ],
    )


def test_fm_malformed_rows_name_file_line_and_field(tmp_path):
    folder, cases = _fm_bad_rows(tmp_path)
    good = (folder / "test.fm.txt").read_text()
    for k, (bad, message) in enumerate(cases):
        (folder / "test.fm.txt").write_text(good + good + bad + "\n" + good)
        with pytest.raises(ValueError) as err:
            cache.prepare(source(folder, "fm", chunk_rows=2), tmp_path / f"c{k}")
        where = f"{folder / 'test.fm.txt'} line 3"
        assert f"{where}, {message}" in str(err.value) or f"{where}: {message}" in str(err.value), (k, err.value)


def test_fm_featindex_errors_name_line_and_field(tmp_path):
    folder = write_fm(tmp_path / "f", [FM_GOOD], [FM_GOOD])
    text = (folder / "featindex.fm.txt").read_text()
    cases = [
        ("usertag:10006\t1\n", "line 1, field usertag: not one of the 16 fields"),
        ("truncate\t0\n", "line 1, field ?: expected 'field:value<TAB>index'"),
        ("domain:x\tseven\n", "line 1, field domain: index 'seven' is not a non-negative integer"),
        ("city:y\t" + text.splitlines()[4].split("\t")[1] + "\n", r"line 1, field city: index \d+ is on lines 1 and 6"),
    ]
    for k, (first, message) in enumerate(cases):
        (folder / "featindex.fm.txt").write_text(first + text)
        with pytest.raises(ValueError, match="featindex.fm.txt " + message.replace("?", r"\?")):
            cache.prepare(source(folder, "fm"), tmp_path / f"c{k}")


def test_skip_drops_counts_and_reports_bad_rows(tmp_path, caplog):
    rows = [raw_row(click="1")] * 20
    for i, (bad, _) in enumerate(RAW_BAD):
        rows[2 * i + 1] = bad
    folder = write_raw(tmp_path / "d", rows[:10], rows[10:])
    with caplog.at_level(logging.WARNING):
        fm, splits = build(source(folder, on_bad_line="skip", chunk_rows=3), tmp_path / "c")
    assert fm.extra["bad_lines_skipped"] == len(RAW_BAD)
    assert sum(fm.split_sizes.values()) == 20 - len(RAW_BAD)
    # the split is drawn over all 20 lines (train.log.txt's, then test.log.txt's), then the bad ones leave
    order, bad = np.random.default_rng(0).permutation(20), {2 * i + 1 for i in range(len(RAW_BAD))}
    parts = {"train": order[:14], "valid": order[14:16], "test": order[16:]}
    assert fm.split_sizes == {s: len(set(lines) - bad) for s, lines in parts.items()}
    assert fm.split_sizes == {"train": 9, "valid": 2, "test": 2}
    assert (np.concatenate([splits[s].labels for s in SPLITS]) == 1.0).all()  # only good rows are left
    assert "skipped 7 malformed lines" in caplog.text and "train.log.txt line 3, column slotprice" in caplog.text
    assert fm.extra["bad_line_examples"][1].startswith(f"{folder / 'train.log.txt'} line 5, column 28")
    assert "7 malformed lines skipped" in fm.description
    folder, cases = _fm_bad_rows(tmp_path)
    good = (folder / "train.fm.txt").read_text()
    (folder / "train.fm.txt").write_text(good + "".join(bad + "\n" for bad, _ in cases))
    fm, splits = build(source(folder, "fm", on_bad_line="skip"), tmp_path / "c")
    assert fm.extra["bad_lines_skipped"] == len(cases) and sum(fm.split_sizes.values()) == 3


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.log\.txt is not a file: data\.source\.root"):
        cache.prepare(source(tmp_path / "missing"), tmp_path / "c")
    folder = write_fm(tmp_path / "f", [FM_GOOD], [FM_GOOD])
    (folder / "featindex.fm.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"featindex\.fm\.txt is not a file"):
        cache.prepare(source(folder, "fm"), tmp_path / "c")
    with pytest.raises(ValueError, match=r"data\.source\.format = 'csv' is not one of \['raw', 'fm'\]"):
        source(tmp_path, fmt="csv")
    with pytest.raises(ValueError, match=r"data\.source\.recipe = 'deepfm'"):
        source(tmp_path, recipe="deepfm")
    with pytest.raises(ValueError, match=r"needs 0 < data\.source\.valid_fraction_of_train < 1"):
        source(tmp_path, split=[0.8, 0.2])
    with pytest.raises(ValueError, match=r"needs 0 < data\.source\.valid_fraction_of_train"):
        source(tmp_path, split="given")
    with pytest.raises(ValueError, match=r"data\.source\.split = 'dated'"):
        source(tmp_path, split="dated", valid_fraction_of_train=0.1)
    with pytest.raises(ValueError, match="takes data.source.valid_fraction_of_train = null"):
        source(tmp_path, valid_fraction_of_train=0.1)
    with pytest.raises(ValueError, match=r"data\.source\.root is not set"):
        source("???")


# --------------------------------------------------------------------------------------------- cache


def test_cache_is_deterministic_and_keyed_by_the_files(tmp_path):
    folder = random_raw(tmp_path / "raw", 150, 50, seed=0)
    first = cache.prepare(source(folder, chunk_rows=16), tmp_path / "c")
    again = cache.prepare(source(folder, chunk_rows=1000), tmp_path / "other")  # chunking is not in the key
    assert first.name == again.name
    for name in [f"{s}_{k}.npy" for s in SPLITS for k in ("ids", "labels")] + ["feature_map.json"]:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert cache.prepare(source(folder, chunk_rows=1000), tmp_path / "c") == first
    with (folder / "test.log.txt").open("a") as fh:
        fh.write(GOOD + "\t0\t0\n")
    second = cache.prepare(source(folder, chunk_rows=64), tmp_path / "c")
    assert second != first and sum(cache.load(second)[0].split_sizes.values()) == 201
    assert cache.prepare(source(folder, min_count=5, chunk_rows=64), tmp_path / "c") not in (first, second)
    assert cache.prepare(source(folder, seed=1, chunk_rows=64), tmp_path / "c") not in (first, second)


def test_hydra_configs_build_the_source(tmp_path, monkeypatch):
    monkeypatch.delenv("IPINYOU_FORMAT", raising=False)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name, recipe, split, min_count in [
            ("ipinyou", "dynint", [0.7, 0.1, 0.2], 20),
            ("ipinyou_optinter", "optinter", [0.8, 0.2], 1),
        ]:
            cfg = compose("train", overrides=[f"data={name}", "data.num_rows=100", f"data.source.root={tmp_path}"])
            src = instantiate(cfg.data.source)
            assert isinstance(src, IPinYouSource) and src.recipe == recipe and src.split == split
            assert src.num_rows == 100 and src.min_count == min_count
            assert src.format == "raw" and cfg.data.paper_dataset == "ipinyou"


# --------------------------------------------------------------------------------------------- real sample


needs_sample = pytest.mark.skipif(
    not (SAMPLE / "train.fm.txt").exists(), reason=f"real iPinYou sample not found at {SAMPLE}"
)


@needs_sample
def test_real_sample_builds(tmp_path):
    fm, splits = build(source(SAMPLE, "fm", min_count=20, chunk_rows=20_000, seed=2022), tmp_path / "c")
    assert [f.name for f in fm.fields] == FIELDS
    assert fm.split_sizes == {"train": 33546, "valid": 4792, "test": 9585}  # 26,773 + 21,150 rows pooled
    assert sum(fm.extra["clicks"].values()) == 305 and fm.extra["advertisers"] == ["2997"]
    for s in SPLITS:
        assert (splits[s].ids >= 0).all() and (splits[s].ids < np.array(fm.vocab_sizes)).all()
    oov = np.array(fm.vocab_sizes) - 1
    assert (splits["train"].ids[:, FIELDS.index("IP")] == oov[FIELDS.index("IP")]).mean() > 0.5  # rare IPs
    assert (splits["train"].ids[:, FIELDS.index("adexchange")] == 0).all()  # adexchange:null in this campaign
    assert fm.description.startswith("iPinYou fm ipinyou_sample (all rows: 47,923 rows), dynint recipe")


@needs_sample
@pytest.mark.parametrize("model", ["lr", "fm"])
def test_lr_and_fm_learn_on_the_real_sample(tmp_path, model):
    """The DynInt recipe on the pooled sample; ~60 clicks among the 9,585 test rows make the AUC noisy.
    Measured with these settings over split seeds 2022, 0, 1, 2 x training seeds 0, 1: LR 0.64-0.70, FM
    0.61-0.69; the same LR on shuffled train labels 0.46-0.57 (best of 6 epochs, as here). Seeds are fixed,
    so the run is deterministic: split 2022 / training seed 0 gives LR 0.669, FM 0.659; the bar is 0.6."""
    fm, splits = build(source(SAMPLE, "fm", min_count=20, chunk_rows=50_000, seed=2022), tmp_path / "c")
    torch.manual_seed(0)
    net = LR(fm) if model == "lr" else FM(fm, embedding_dim=8, embedding_init_std=1e-3)
    auc = fit_and_auc(net, splits, epochs=6, lr=1e-2, batch_size=256)
    assert auc > 0.6, f"{model} test AUC {auc:.4f}"
