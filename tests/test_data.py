"""The data path: synthetic generation, the validated cache, and the whole-batch loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctrlab.data import cache
from ctrlab.data.cache import SplitArrays
from ctrlab.data.datamodule import BatchLoader, CTRDataModule, choose_resident, resident_split
from ctrlab.data.schema import FeatureMap, Field
from ctrlab.data.synthetic import threshold_encode
from ctrlab.nn.embedding import FeatureEmbedding
from tests.helpers import synthetic_source


def small(**kw):
    return synthetic_source(num_rows=2000, num_fields=6, max_vocab=40, **kw)


def test_synthetic_is_deterministic_and_exposes_its_planted_interactions(tmp_path):
    a = cache.load(cache.prepare(small(), tmp_path / "a"))
    b = cache.load(cache.prepare(small(), tmp_path / "b"))
    c = cache.load(cache.prepare(small(seed=1), tmp_path / "c"))
    np.testing.assert_array_equal(a[1]["train"].ids, b[1]["train"].ids)
    assert not np.array_equal(a[1]["train"].ids, c[1]["train"].ids)
    planted = a[0].extra["planted"]
    assert len(planted["pairs"]) == 8 and len(planted["triples"]) == 4
    assert all(0 <= f < 6 for pair in planted["pairs"] for f in pair)
    assert a[0].split_sizes == {"train": 1400, "valid": 200, "test": 400}
    rate = np.concatenate([a[1][s].labels for s in ("train", "valid", "test")]).mean()
    assert abs(rate - 0.25) < 0.05


def test_threshold_encode_counts_train_only_and_maps_rare_and_unseen_to_oov():
    raw = np.array([[0], [0], [1], [2], [2], [3]])  # value 3 appears only outside train
    ids, vocab = threshold_encode(raw, train_rows=np.arange(5), min_count=2)
    assert vocab == [4]  # pad 0, kept values 0 and 2 -> ids 1, 2, OOV 3
    assert ids[:, 0].tolist() == [1, 1, 3, 2, 2, 3]


def test_truncated_or_unmarked_cache_is_detected_and_rebuilt(tmp_path):
    src = small()
    folder = cache.prepare(src, tmp_path)
    expected = np.load(folder / "train_ids.npy").copy()
    with open(folder / "train_ids.npy", "r+b") as fh:  # a crash mid-copy: the file is cut short
        fh.truncate(1000)
    assert not cache.is_valid(folder, src.cache_key())
    assert cache.prepare(src, tmp_path) == folder
    np.testing.assert_array_equal(np.load(folder / "train_ids.npy"), expected)
    (folder / cache.MARKER).unlink()  # never finished: no marker
    assert not cache.is_valid(folder, src.cache_key())
    cache.prepare(src, tmp_path)
    assert cache.is_valid(folder, src.cache_key())
    assert not list(tmp_path.rglob("*.tmp-*")), "a temporary build folder was left behind"


def test_changed_recipe_gets_its_own_cache_folder(tmp_path):
    assert cache.prepare(small(), tmp_path) != cache.prepare(small(min_count=2), tmp_path)
    key = json.loads((cache.prepare(small(), tmp_path) / "key.json").read_text())
    assert key["min_count"] == 5 and key["recipe_version"] >= 1


def test_loader_visits_every_row_once_per_epoch_in_a_new_order(tmp_path):
    _, splits = cache.load(cache.prepare(small(), tmp_path))
    loader = BatchLoader(splits["train"], batch_size=128, shuffle=True, seed=0)
    epochs = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        epochs.append(np.concatenate([b["ids"].numpy() for b in loader]))
    for seen in epochs:
        assert len(seen) == 1400
        assert sorted(map(tuple, seen)) == sorted(map(tuple, np.asarray(splits["train"].ids)))
    assert not np.array_equal(epochs[0], epochs[1])
    batch = next(iter(loader))
    assert batch["ids"].dtype == torch.int64 and batch["label"].dtype == torch.float32
    assert len(loader) == 11  # ceil(1400 / 128): the last, partial batch is kept


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_shards_are_disjoint_and_equal_in_length(tmp_path, world):
    _, splits = cache.load(cache.prepare(small(), tmp_path))
    shards = [list(BatchLoader(splits["train"], 100, True, seed=0, rank=r, world_size=world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    starts = [tuple(b["ids"][0].tolist()) + (float(b["label"][0]),) for s in shards for b in s]
    assert len(starts) == len(set(starts))


def test_device_resident_split_serves_the_same_batches_in_the_same_order(tmp_path):
    """data.resident=device on CPU: the split copied whole into tensors, batches cut from them; they must equal the
    memory-mapped loader's, value for value and dtype for dtype, in the same shuffled order for the same seed."""
    _, splits = cache.load(cache.prepare(small(), tmp_path))
    values = np.random.default_rng(0).random(splits["train"].ids.shape, dtype=np.float32)  # numeric fields too
    arrays = SplitArrays(ids=splits["train"].ids, labels=splits["train"].labels, values=values)
    resident = resident_split(arrays, "device", torch.device("cpu"))
    assert isinstance(resident.ids, torch.Tensor) and resident.ids.dtype == torch.int32  # the cache's dtype
    for shuffle, world in [(True, 1), (False, 1), (True, 2)]:
        host = [BatchLoader(arrays, 128, shuffle, seed=3, rank=r, world_size=world) for r in range(world)]
        dev = [BatchLoader(resident, 128, shuffle, seed=3, rank=r, world_size=world) for r in range(world)]
        for h, d in zip(host, dev, strict=True):
            h.set_epoch(1), d.set_epoch(1)
            pairs = list(zip(h, d, strict=True))
            assert len(pairs) == len(h) > 0
            for a, b in pairs:
                assert a.keys() == b.keys() == {"ids", "label", "values"}
                for key in a:
                    assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_evaluation_shards_cover_every_row_once():
    arrays = SplitArrays(ids=np.arange(1050, dtype=np.int32).reshape(-1, 1), labels=np.zeros(1050, np.float32))
    for batch_size, world in [(100, 1), (100, 2), (100, 3), (100, 4), (4096, 2)]:  # 4096: one batch, two ranks
        shards = [BatchLoader(arrays, batch_size, False, rank=r, world_size=world, even=False) for r in range(world)]
        served = [[b["ids"].numpy().ravel() for b in s] for s in shards]
        assert [len(s) for s in shards] == [len(batches) for batches in served]
        assert all(len(batches) > 0 and all(len(b) <= batch_size for b in batches) for batches in served)
        rows = np.concatenate([b for batches in served for b in batches])
        assert rows.tolist() == list(range(1050))  # every row once, the ranks' shards in order


def test_resident_mode_is_resolved_for_the_device(tmp_path):
    _, splits = cache.load(cache.prepare(small(), tmp_path))
    cpu = torch.device("cpu")
    assert choose_resident("auto", cpu, splits) == "host"  # on CPU the memory map is already host memory
    assert choose_resident("device", cpu, splits) == "device"
    with pytest.raises(ValueError, match="data.resident = 'pinned' copies batches to a GPU"):
        choose_resident("pinned", cpu, splits)
    with pytest.raises(ValueError, match=r"data.resident = 'gpu' is not one of \['auto', 'host'"):
        CTRDataModule(small(), str(tmp_path), 256, 1000, seed=0, resident="gpu")
    dm = CTRDataModule(small(), str(tmp_path), batch_size=256, eval_batch_size=1000, seed=0, resident="device")
    dm.prepare_data()
    dm.setup()
    assert isinstance(dm.train_dataloader().arrays.ids, torch.Tensor)
    assert dm.train_dataloader().arrays is dm.train_dataloader().arrays  # copied once, not per loader
    assert sum(len(b["label"]) for b in dm.test_dataloader()) == 400


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("where", ["device", "pinned"])
def test_gpu_resident_batches_equal_the_host_loader(tmp_path, where):
    _, splits = cache.load(cache.prepare(small(), tmp_path))
    gpu = torch.device("cuda")
    resident = resident_split(splits["train"], where, gpu)
    assert resident.ids.is_pinned() if where == "pinned" else resident.ids.is_cuda
    host = BatchLoader(splits["train"], 128, True, seed=3)
    dev = BatchLoader(resident, 128, True, seed=3, device=gpu)
    for a, b in zip(host, dev, strict=True):
        assert all(b[k].is_cuda and torch.equal(a[k], b[k].cpu()) for k in a)


def test_datamodule_prepares_and_serves_splits(tmp_path):
    dm = CTRDataModule(small(), str(tmp_path), batch_size=256, eval_batch_size=1000, seed=0)
    dm.prepare_data()
    dm.setup()
    assert dm.feature_map.num_fields == 6
    assert sum(len(b["label"]) for b in dm.test_dataloader()) == 400
    assert len(dm.val_dataloader()) == 1


def bag_feature_map():
    fields = [
        Field("item", 10),
        Field("user", 5),
        Field("hist_item", 10, kind="sequence", max_len=4, shares="item"),
        Field("genre", 6, kind="multi", max_len=3),
    ]
    return FeatureMap("bags", fields, {"train": 3, "valid": 1, "test": 1})


def test_bag_fields_come_last_and_share_only_known_fields():
    fm = bag_feature_map()
    assert [f.name for f in fm.bag_fields] == ["hist_item", "genre"] and fm.bag_len == 4
    assert fm.offsets.tolist() == [0, 10, 0, 15] and fm.total_vocab == 21  # hist_item reuses item's rows
    with pytest.raises(ValueError, match="bag field 'genre' must come after every scalar field"):
        FeatureMap("bad", [Field("genre", 6, kind="multi", max_len=3), Field("item", 10)], {})
    with pytest.raises(ValueError, match="shares unknown or sharing field 'film'"):
        FeatureMap("bad", [Field("item", 10), Field("hist", 10, "sequence", 4, shares="film")], {})


def test_bags_round_trip_through_the_cache_and_pool_to_their_mean(tmp_path):
    fm = bag_feature_map()
    bags = np.array([[[2, 3, 0, 0], [1, 4, 5, 0]], [[0, 0, 0, 0], [2, 0, 0, 0]], [[9, 9, 9, 9], [0, 0, 0, 0]]])
    for split, rows in {"train": slice(0, 3), "valid": slice(0, 1), "test": slice(2, 3)}.items():
        arrays = SplitArrays(ids=np.array([[2, 1], [3, 4], [9, 0]])[rows], labels=np.zeros(3)[rows], bags=bags[rows])
        cache.save_split(tmp_path, split, arrays)
    fm.save(tmp_path / "feature_map.json")
    cache._check_arrays(tmp_path, fm)
    _, splits = cache.load(tmp_path)
    batch = BatchLoader(splits["train"], 3, shuffle=False).batch(slice(None))
    assert batch["bag_ids"].shape == (3, 2, 4) and batch["bag_lengths"].tolist() == [[2, 3], [0, 1], [4, 0]]

    emb = FeatureEmbedding(fm, dim=3, init_std=1.0)
    out, w = emb(batch), emb.table.weight  # [B, 4, D]
    assert out.shape == (3, 4, 3)
    torch.testing.assert_close(out[0, 2], (w[2] + w[3]) / 2)  # history items use the item field's rows
    torch.testing.assert_close(out[0, 3], (w[15 + 1] + w[15 + 4] + w[15 + 5]) / 3)
    torch.testing.assert_close(out[1, 2], torch.zeros(3))  # an empty bag pools to zeros
    torch.testing.assert_close(out[2, 0], w[9])
    per_position = emb.bag_embeddings(batch)  # [B, F_bag, L, D]
    torch.testing.assert_close(per_position[0, 1, 1], w[15 + 4])
    torch.testing.assert_close(per_position[0, 1, 3], torch.zeros(3))
