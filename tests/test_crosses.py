"""Cross-product features (src/ctrlab/data/crosses.py) and Poly2, which memorizes them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from ctrlab.data import cache, crosses
from ctrlab.data.crosses import CrossSpec, attach_crosses, prepare_crosses
from ctrlab.data.datamodule import CTRDataModule
from ctrlab.data.schema import SPLITS
from ctrlab.models.lr import LR
from ctrlab.models.poly2 import Poly2
from tests.helpers import fit_and_auc, synthetic_source


def small(**kw):
    return synthetic_source(num_rows=3000, num_fields=5, max_vocab=30, **kw)


def build(tmp_path, spec, source=None):
    base = cache.prepare(source or small(), tmp_path)
    fm, splits = cache.load(base)
    attach_crosses(prepare_crosses(base, spec), fm, splits)
    return fm, splits


def slow_cross_ids(splits, a, b, min_count):
    """Direct definition: count (id_a, id_b) tuples in train; kept ones get 1..K in code order, else K + 1."""
    counts = Counter(map(tuple, np.asarray(splits["train"].ids)[:, [a, b]].tolist()))
    kept = sorted(k for k, c in counts.items() if c >= min_count)
    index = {k: i + 1 for i, k in enumerate(kept)}
    return {
        s: np.array([index.get(tuple(r), len(kept) + 1) for r in np.asarray(splits[s].ids)[:, [a, b]].tolist()])
        for s in SPLITS
    }, len(kept) + 2


@pytest.mark.parametrize("bincount_max", [1 << 24, 0])  # both counting paths: bincount and sort
def test_cross_ids_match_the_direct_definition(tmp_path, monkeypatch, bincount_max):
    monkeypatch.setattr(crosses, "_BINCOUNT_MAX", bincount_max)
    fm, splits = build(tmp_path, CrossSpec(pairs="all", min_count=3))
    assert fm.cross_pairs == [(a, b) for a in range(5) for b in range(a + 1, 5)]
    for p, (a, b) in enumerate(fm.cross_pairs):
        expected, vocab = slow_cross_ids(splits, a, b, 3)
        assert fm.cross_fields[p].vocab_size == vocab and fm.cross_fields[p].name == f"f{a}xf{b}"
        for s in SPLITS:
            np.testing.assert_array_equal(splits[s].crosses[:, p], expected[s])


def test_a_subset_of_pairs_and_clear_errors(tmp_path):
    fm, splits = build(tmp_path, CrossSpec(pairs=[["f3", "f1"], ["f0", "f4"]], min_count=1))
    assert fm.cross_pairs == [(0, 4), (1, 3)] and splits["train"].crosses.shape[1] == 2
    with pytest.raises(ValueError, match=r"\['f1', 'f9'\] is not a pair of two categorical fields.*allowed"):
        CrossSpec(pairs=[["f1", "f9"]], min_count=1).resolve(fm)
    with pytest.raises(ValueError, match="use 'all' or a list"):
        CrossSpec(pairs="some", min_count=1).resolve(fm)


def test_crosses_are_a_layer_built_once_atomically_without_rebuilding_the_base(tmp_path):
    base = cache.prepare(small(), tmp_path)
    stamp = (base / "train_ids.npy").stat().st_mtime_ns
    spec = CrossSpec(pairs="all", min_count=2)
    folder = prepare_crosses(base, spec)
    assert folder.parent == base / "crosses" and (base / "train_ids.npy").stat().st_mtime_ns == stamp
    assert prepare_crosses(base, CrossSpec(pairs="all", min_count=5)) != folder  # threshold in the key
    expected = np.load(folder / "valid_crosses.npy").copy()
    with open(folder / "valid_crosses.npy", "r+b") as fh:  # cut short: detected and rebuilt
        fh.truncate(200)
    assert prepare_crosses(base, spec) == folder
    np.testing.assert_array_equal(np.load(folder / "valid_crosses.npy"), expected)
    assert not list(base.rglob("*.tmp-*"))
    assert cache.is_valid(base, small().cache_key())  # the base cache is untouched by the layer


def test_datamodule_serves_cross_ids(tmp_path):
    dm = CTRDataModule(small(), str(tmp_path), 128, 1000, seed=0, crosses=CrossSpec("all", 3))
    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["cross_ids"].shape == (128, 10) and batch["cross_ids"].dtype == torch.int64
    assert len(dm.feature_map.cross_fields) == 10


def test_poly2_is_lr_plus_memorized_cross_weights(tmp_path):
    fm, splits = build(tmp_path, CrossSpec(pairs="all", min_count=3))
    model = Poly2(fm)
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    batch = {
        "ids": torch.as_tensor(np.array(splits["test"].ids[:20]), dtype=torch.int64),
        "cross_ids": torch.as_tensor(np.array(splits["test"].crosses[:20]), dtype=torch.int64),
    }
    w = model.linear.weights.table.weight[:, 0]
    cw = model.cross_weights.table.weight[:, 0]
    offsets, cross_offsets = fm.offsets, fm.cross_offsets
    expected = torch.stack(
        [
            model.linear.bias
            + sum(w[offsets[f] + batch["ids"][r, f]] for f in range(fm.num_fields))
            + sum(cw[cross_offsets[p] + batch["cross_ids"][r, p]] for p in range(len(fm.cross_pairs)))
            for r in range(20)
        ]
    )
    torch.testing.assert_close(model(batch), expected)
    assert set(model.parameter_groups()) == {"embedding", "dense"} and len(model.parameter_groups()["dense"]) == 1


def test_poly2_without_crosses_says_how_to_get_them(tiny_feature_map):
    with pytest.raises(ValueError, match=r"data\.crosses\.enabled=true"):
        Poly2(tiny_feature_map)


def test_poly2_learns_planted_pairs_better_than_lr(tmp_path):
    fm, splits = build(tmp_path, CrossSpec(pairs="all", min_count=5), synthetic_source(max_vocab=20))
    torch.manual_seed(0)
    lr_auc = fit_and_auc(LR(fm), splits, epochs=3, lr=1e-2)
    torch.manual_seed(0)
    auc = fit_and_auc(Poly2(fm), splits, epochs=3, lr=1e-2)
    # seen: LR 0.683 / 0.695 / 0.706, Poly2 0.736 / 0.735 / 0.751 with data seeds 0 / 1 / 2
    assert auc > lr_auc + 0.03, f"Poly2 {auc:.4f} vs LR {lr_auc:.4f}"
