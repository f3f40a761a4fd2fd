"""The shared streaming pipeline's pieces: cells, headers, encodings, splits and per-line draws (the readers'
tests cover the whole build)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ctrlab.data.tabular import (
    Categorical,
    EqualFrequency,
    MinMax,
    check_split,
    line_uniforms,
    open_text,
    random_split,
    seeded_positions,
    split_cells,
)


def counts(values: list, n: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"value": values, "count": n}, schema_overrides={"count": pl.Int64})


def test_split_cells_counts_columns_and_finds_nul_lines():
    raw, nul = split_cells(b"a,b,c\n\na,b\nx\x00y,b,c,d\n", ",", ["p", "q", "r"])
    assert raw["_ncols"].to_list() == [3, 0, 2, 4]
    assert raw["r"].to_list() == ["c", None, None, "c"] and raw["p"][3] == "x y"  # NUL blanked
    assert nul.tolist() == [3]


def test_open_text_skips_the_header_and_numbers_lines_from_it(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"h1,h2\n1,2\n3,4\n5,6")
    f = open_text(path, header=True, max_lines=None)
    assert (f.lines, f.start, f.line_number(0)) == (3, 6, 2)
    assert open_text(path, header=True, max_lines=2).lines == 2
    assert open_text(path, header=False, max_lines=None).lines == 4


def test_equal_frequency_closes_a_bucket_once_it_has_min_rows():
    """Values 1..7 seen 5, 1, 1, 3, 10, 2, 1 times; buckets of >= 5 rows: {1} | {2, 3, 4} | {5} | {6, 7}."""
    c = counts([5, 3, 7, 1, 4, 6, 2], [10, 1, 1, 5, 3, 2, 1])  # in no order
    ef = EqualFrequency(5)
    assert ef.thresholds(c).tolist() == [1, 4, 5]
    enc = ef.encode("x", c)
    assert enc.field.vocab_size == 4 + 2
    frame = pl.DataFrame({"x": [None, -3, 1, 2, 4, 5, 6, 7, 100]}, schema={"x": pl.Int64})
    assert frame.select(enc.ids)["x"].to_list() == [0, 1, 1, 2, 2, 3, 4, 4, 4]
    assert EqualFrequency(100).thresholds(c).tolist() == []  # one bucket takes everything
    empty = EqualFrequency(5).encode("x", counts([], []).cast({"value": pl.Int64}))
    assert frame.select(empty.ids)["x"].to_list() == [0] + [1] * 8


def test_categorical_and_minmax_encodings():
    c = counts(["b", "a", "c"], [3, 5, 1])
    enc = Categorical(2).encode("x", c)  # a -> 1, b -> 2, c below min_count -> OOV 3
    frame = pl.DataFrame({"x": ["a", "b", "c", "zz", None]})
    assert enc.field.vocab_size == 4 and frame.select(enc.ids)["x"].to_list() == [1, 2, 3, 3, 0]
    mm = MinMax().encode("v", counts([2, 10, 6], [1, 1, 1]))
    frame = pl.DataFrame({"v": [2, 6, 14, None]}, schema={"v": pl.Int64})
    assert mm.facts == {"min": 2, "max": 10} and mm.field.kind == "numeric"
    assert frame.select(mm.ids)["v"].to_list() == [1, 1, 1, 0]
    assert frame.select(mm.values)["v"].to_list() == [0.0, 0.5, 1.0, 0.0]


def test_seeded_positions_is_the_int64_permutation_at_half_the_memory():
    pos = seeded_positions(1000, 7)
    expected = np.empty(1000, dtype=np.int64)
    expected[np.random.default_rng(7).permutation(1000)] = np.arange(1000)
    assert pos.dtype == np.uint32 and (pos == expected).all()


def test_random_split_bounds_and_checks():
    assert random_split(1000, [0.7, 0.1, 0.2], None, 0).bounds.tolist() == [0, 700, 800, 1000]
    assert random_split(1000, [0.8, 0.2], 0.1, 0).bounds.tolist() == [0, 720, 800, 1000]
    with pytest.raises(ValueError, match="summing to 1"):
        check_split([0.5, 0.2], 0.1, "")
    with pytest.raises(ValueError, match=r"\[train, valid, test\] takes valid_fraction_of_train = null \(see x\)"):
        check_split([0.7, 0.1, 0.2], 0.1, " (see x)")
    with pytest.raises(ValueError, match=r"takes 0 < valid_fraction_of_train < 1"):
        check_split([0.8, 0.2], 1.0, "")
    with pytest.raises(ValueError, match="must be"):
        check_split([1.0], None, "")


def test_line_uniforms_are_per_line_and_independent_of_the_chunking():
    whole = line_uniforms(3, 0, 100_000)
    assert (line_uniforms(3, 30_000, 500) == whole[30_000:30_500]).all()
    assert not (line_uniforms(4, 0, 100) == whole[:100]).any()
    assert whole.min() >= 0.0 and whole.max() < 1.0
    hist = np.histogram(whole, bins=10, range=(0, 1))[0]
    assert (abs(hist - 10_000) < 500).all()  # ~uniform: 5 sigma is ~475
