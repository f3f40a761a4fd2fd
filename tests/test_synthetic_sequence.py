"""The synthetic behaviour-sequence dataset: determinism, the sequence layout, the train-split vocabulary,
and that the planted target-behaviour signal is there (in the labels, and learnable from the history)."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from ctrlab.data import cache
from ctrlab.data.cache import SplitArrays
from ctrlab.data.schema import SPLITS, FeatureMap
from ctrlab.data.sequences import gather_windows, train_vocab, window_coverage
from ctrlab.data.synthetic import split_indices
from ctrlab.data.synthetic_sequence import SyntheticSequenceSource, auc
from ctrlab.models.fm import FM
from tests.helpers import ROOT, fit_and_auc


def source(**overrides) -> SyntheticSequenceSource:
    """Small: 30k rows, 300 items in 4 interests, a strong planted term; a few seconds to learn."""
    cfg = dict(
        name="test_synthetic_sequence", num_rows=30_000, num_users=500, num_items=300, num_categories=16,
        num_interests=4, latent_dim=8, item_noise=0.5, zipf_alpha=1.0, user_interest_alpha=0.3, min_hist_len=1,
        max_len=20, target_from_interest_prob=0.5, aggregation="max", first_order_std=0.3, interaction_std=2.0,
        ctr=0.2, split=[0.7, 0.1, 0.2], min_count=5, seed=0,
    )  # fmt: skip
    cfg.update(overrides)
    return SyntheticSequenceSource(**cfg)


def build(src: SyntheticSequenceSource, root):
    return cache.load(cache.prepare(src, root))


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = build(source(num_rows=3000), tmp_path / "a")
    b = build(source(num_rows=3000), tmp_path / "b")
    c = build(source(num_rows=3000, seed=1), tmp_path / "c")
    assert a[0].to_dict() == b[0].to_dict()
    for s in SPLITS:
        for kind in ("ids", "labels", "bags"):
            np.testing.assert_array_equal(getattr(a[1][s], kind), getattr(b[1][s], kind))
    assert not np.array_equal(a[1]["train"].bags, c[1]["train"].bags)


def test_sequence_layout_and_shared_vocabularies(tmp_path):
    fm, splits = build(source(), tmp_path / "c")
    assert [(f.name, f.kind, f.shares, f.max_len) for f in fm.fields] == [
        ("user_id", "categorical", None, 1), ("item_id", "categorical", None, 1), ("cat_id", "categorical", None, 1),
        ("hist_item_id", "sequence", "item_id", 20), ("hist_cat_id", "sequence", "cat_id", 20),
    ]  # fmt: skip
    assert fm.vocab_sizes[3:] == fm.vocab_sizes[1:3] and fm.total_vocab == sum(fm.vocab_sizes[:3])
    assert fm.split_sizes == {"train": 21_000, "valid": 3_000, "test": 6_000}
    draw = source().generate()
    assert draw.hist_len.min() >= 1 and draw.hist_len.max() <= 20
    item_to_cat: dict[int, int] = {}
    for s in SPLITS:
        bags = splits[s].bags
        lengths = (bags != 0).sum(axis=-1)  # [N, 2]
        assert ((bags != 0) == (np.arange(20) < lengths[..., None])).all(), "0-padded at the end only"
        assert (lengths[:, 0] == lengths[:, 1]).all() and lengths.min() >= 1
        # one category per item, the same for targets and histories (shared id spaces)
        pairs = np.concatenate([splits[s].ids[:, 1:3], bags.transpose(0, 2, 1).reshape(-1, 2)])
        pairs = np.unique(pairs[(pairs[:, 0] > 0) & (pairs[:, 0] != fm.fields[1].oov_id)], axis=0)
        for i, c in pairs:
            assert item_to_cat.setdefault(int(i), int(c)) == int(c)
    assert len(item_to_cat) > 250  # most of the 300 items are kept


def test_vocabulary_from_the_train_split(tmp_path):
    fm, splits = build(source(num_rows=3000, min_count=10**9), tmp_path / "a")
    assert fm.vocab_sizes == [2, 2, 2, 2, 2]  # nothing is kept: every value is OOV (id 1), padding 0
    assert all((splits[s].ids == 1).all() and set(np.unique(splits[s].bags)) <= {0, 1} for s in SPLITS)
    # a plain reference: count each item in the train rows (target + history), keep >= min_count, ids by rank
    src = source(num_rows=3000, min_count=40)
    fm, splits = build(src, tmp_path / "b")
    draw = src.generate()
    rows = split_indices(3000, [0.7, 0.1, 0.2], np.random.default_rng([0, 1]))
    counts = np.zeros(300, dtype=np.int64)
    for r in rows["train"]:
        counts[draw.target[r]] += 1
        for h in draw.hist[draw.hist_lo[r] : draw.hist_lo[r] + draw.hist_len[r]]:
            counts[h] += 1
    kept = np.flatnonzero(counts >= 40)
    assert 0 < len(kept) < 300 and fm.fields[1].vocab_size == len(kept) + 2
    expected = {int(i): k + 1 for k, i in enumerate(kept)}
    for s in SPLITS:
        want = [expected.get(int(i), len(kept) + 1) for i in draw.target[rows[s]]]
        assert splits[s].ids[:, 1].tolist() == want, s
        first = splits[s].bags[:, 0, 0].tolist()  # the oldest behaviour of each row
        assert first == [expected.get(int(draw.hist[lo]), len(kept) + 1) for lo in draw.hist_lo[rows[s]]], s


def test_planted_interaction_drives_the_labels(tmp_path):
    """The label follows the planted similarity of the target to its own history, not to another row's."""
    src = source()
    draw = src.generate()
    assert auc(draw.interaction, draw.label) > 0.68
    # the same term against a random other row's history: the signal is gone
    n = len(draw.label)
    other = np.random.default_rng(0).permutation(n)
    lengths = draw.hist_len[other]
    new_lo = np.cumsum(lengths) - lengths  # the other rows' histories, laid out again row after row
    offset = np.arange(lengths.sum()) - np.repeat(new_lo, lengths)
    hist = draw.hist[np.repeat(draw.hist_lo[other], lengths) + offset]
    target = np.repeat(draw.target, lengths)
    sim = (draw.item_latent[target] * draw.item_latent[hist]).sum(axis=1)
    shuffled = np.maximum.reduceat(sim, new_lo)
    own = np.maximum.reduceat(
        (draw.item_latent[np.repeat(draw.target, draw.hist_len)] * draw.item_latent[draw.hist]).sum(axis=1),
        draw.hist_lo,
    )
    np.testing.assert_allclose(own, draw.interaction)  # the planted term is the max similarity
    assert auc(shuffled, draw.label) < 0.55
    fm, splits = build(src, tmp_path / "c")
    oracle = fm.extra["oracle"]
    assert oracle["test"]["auc"] > fm.extra["interaction_test_auc"] > 0.68 and oracle["valid"]["auc"] > 0.68
    # the group oracles, row by row: New = the target's category nowhere in the (real) history; inFreq = there, but
    # less often than the history's most frequent category
    test_rows = split_indices(n, src.split, np.random.default_rng([src.seed, 1]))["test"]
    logit, label = draw.logit[test_rows], splits["test"].labels
    groups = {"new": [], "infreq": []}
    for r, (target_cat, history) in enumerate(zip(splits["test"].ids[:, 2], splits["test"].bags[:, 1], strict=True)):
        counts = {c: list(history).count(c) for c in history if c > 0}
        if target_cat not in counts:
            groups["new"].append(r)
        elif counts[target_cat] < max(counts.values()):
            groups["infreq"].append(r)
    for name, rows in groups.items():
        assert 100 < len(rows) < len(label) / 2
        assert oracle["test"][f"auc_{name}"] == pytest.approx(auc(logit[rows], label[rows]))
    assert fm.extra["planted"]["aggregation"] == "max"
    assert abs(fm.extra["ctr"] - 0.2) < 0.02


def test_fm_learns_from_the_pooled_history(tmp_path):
    """FM over the mean-pooled history beats FM over user, item and category alone."""
    fm, splits = build(source(), tmp_path / "c")
    scalar = FeatureMap(fm.dataset, fm.scalar_fields, fm.split_sizes)
    scalar_splits = {s: SplitArrays(ids=np.asarray(a.ids), labels=np.asarray(a.labels)) for s, a in splits.items()}
    with_history = fit_and_auc(FM(fm, 8, 0.01), splits, epochs=3, lr=1e-2)
    without = fit_and_auc(FM(scalar, 8, 0.01), scalar_splits, epochs=3, lr=1e-2)
    assert with_history > without + 0.03, (with_history, without)


def test_config_errors():
    with pytest.raises(ValueError, match="aggregation"):
        source(aggregation="sum")
    with pytest.raises(ValueError, match="every interest has an item"):
        source(num_categories=2)
    with pytest.raises(ValueError, match="min_hist_len"):
        source(min_hist_len=0)


def test_hydra_config_builds_the_source(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=synthetic_sequence", "data.num_rows=2000"])
    src = instantiate(cfg.data.source)
    assert isinstance(src, SyntheticSequenceSource) and src.num_rows == 2000
    fm, _ = build(src, tmp_path / "c")
    assert fm.num_fields == 5 and sum(fm.split_sizes.values()) == 2000


# --------------------------------------------------------------------------------------------- helpers


def test_sequence_helpers_match_plain_loops():
    rng = np.random.default_rng(0)
    flat = rng.integers(1, 50, 200).astype(np.int32)
    length = rng.integers(0, 8, 300)
    lo = rng.integers(0, 200 - 8, 300)
    got = gather_windows(flat, lo, length, 8)
    for r in range(300):
        want = list(flat[lo[r] : lo[r] + length[r]]) + [0] * (8 - length[r])
        assert got[r].tolist() == want
    assert gather_windows(flat, lo[:0], length[:0], 8).shape == (0, 8)
    with pytest.raises(ValueError, match="does not fit"):
        gather_windows(flat, lo, length, 5)
    weight = rng.random(300)
    cover = np.zeros(200)
    for r in range(300):
        cover[lo[r] : lo[r] + length[r]] += weight[r]
    np.testing.assert_allclose(window_coverage(200, lo, length, weight), cover, atol=1e-9)
    lut, vocab = train_vocab(np.array([0, 3, 1, 5, 2]), 2, forced_oov=np.array([False, False, False, True, False]))
    assert lut.tolist() == [3, 1, 3, 3, 2] and vocab == 4  # kept: raw 1, 4 -> 1, 2; OOV 3
