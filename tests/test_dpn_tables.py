"""DPN's tables (configs/experiment/dpn/): Table 3's test group against a direct count, rows keyed by more than one
column, and the smoke reproductions end to end (slow)."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ctrlab.data.cache import SplitArrays
from ctrlab.data.datamodule import RareValueGroup
from ctrlab.data.schema import FeatureMap, Field
from ctrlab.report.paper import get_table
from ctrlab.report.tables import row_id
from ctrlab.reproduce import experiment_spec, implemented_models, main
from ctrlab.run_config import ConfigError
from ctrlab.train import build_datamodule
from tests.helpers import ROOT


def test_test_group_keeps_the_rows_of_values_seen_fewer_than_n_times_in_train():
    rng = np.random.default_rng(0)
    vocab = 40  # ids 1..38 kept values, 39 = OOV (values below the data's own threshold)
    train = rng.zipf(1.3, size=3000).clip(1, vocab - 1).astype(np.int32)
    test = rng.integers(1, vocab, size=500).astype(np.int32)
    fm = FeatureMap("d", [Field("item", 9), Field("UserID", vocab)], {"train": 3000, "valid": 0, "test": 500},
                    extra={"oracle": {"test": {"auc": 0.9}, "valid": {"auc": 0.8}}})  # fmt: skip
    splits = {s: SplitArrays(ids=np.stack([np.zeros_like(u), u], 1), labels=np.arange(len(u), dtype=np.float32))
              for s, u in (("train", train), ("test", test))}  # fmt: skip
    RareValueGroup("UserID", 20).apply(fm, splits)
    # direct: each test row's user, counted among the train rows one by one
    expected = [i for i, u in enumerate(test) if u == vocab - 1 or sum(int(t) == u for t in train) < 20]
    assert 0 < len(expected) < len(test)
    np.testing.assert_array_equal(splits["test"].labels, np.array(expected, dtype=np.float32))
    np.testing.assert_array_equal(splits["test"].ids[:, 1], test[expected])
    assert fm.split_sizes["test"] == len(expected) and "fewer than 20 times" in fm.description
    assert "test" not in fm.extra["oracle"] and "valid" in fm.extra["oracle"]  # the oracle was for every test row
    with pytest.raises(ValueError, match=r"data\.test_group\.field='user' is not a field of d"):
        RareValueGroup("user", 20).apply(fm, splits)


def test_a_test_group_below_the_datas_count_threshold_stops_before_any_work():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=dpn/table3", "data=synthetic_movielens_tag",
                                          "data.source.min_count=25"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"data\.test_group\.fewer_than=20 is below data\.source\.min_count=25"):
        build_datamodule(cfg)


def test_rows_keyed_by_model_and_context_each_have_their_own_id_and_config():
    table = get_table("dpn", "table2b")
    ids = [row_id(table, r) for r in table.rows]
    assert len(set(ids)) == len(ids) and "fc1_plus_fc2[context=(x0, x0)]" in ids
    spec = experiment_spec("dpn/table2b")
    assert set(spec["row_configs"]) == set(ids)  # every row of Table 2b has a config
    assert len(implemented_models("dpn", "table2b", spec["row_configs"])) == len(ids)
    # Table 10: one head count for every DPO layer, so the rows with 2-1 / 1-2 heads have none
    spec10 = experiment_spec("dpn/table10")
    missing = [row_id(get_table("dpn", "table10"), r) for r in get_table("dpn", "table10").rows
               if row_id(get_table("dpn", "table10"), r) not in spec10["row_configs"]]  # fmt: skip
    assert sorted(missing) == ["fe_dpn_mok_100_100[head=1-2]", "fe_dpn_mok_100_100[head=2-1]",
                               "fe_dpn_mok_100_200[head=1-2]"]  # fmt: skip


@pytest.mark.slow  # each a whole smoke reproduction (4-36 runs): minutes on 2 cores
@pytest.mark.parametrize("experiment, data", [
    ("dpn/table3", "synthetic_movielens_tag"),
    ("dpn/table2c", "synthetic_movielens_tag"),
    ("dpn/table13c", "synthetic_movielens_1m"),
])  # fmt: skip
def test_a_dpn_smoke_reproduction_writes_its_report(experiment, data, tmp_path, monkeypatch):
    monkeypatch.setenv("CTRLAB_ROOT", str(tmp_path))
    assert main([experiment, "--scale", "smoke", "--data", data, "data.num_rows=3000"]) == 0
    md = (tmp_path / "results" / "dpn" / f"{experiment.split('/')[1]}.smoke.md").read_text()
    assert "not run" not in md and "failed" not in md.split("---")[0]
