"""A config value of the wrong type or range stops the run before any work, naming the key, the value and what is
allowed (ctrlab.run_config); a run that trains zero steps fails instead of "completing"."""

from __future__ import annotations

import json

import pytest

from ctrlab.train import ConfigError, NoTrainingError, train
from tests.test_train import FAST, make_cfg


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("data.batch_size=-5", "`data.batch_size` = -5: Input should be greater than or equal to 1"),
        ("data.batch_size=0", "`data.batch_size` = 0: Input should be greater than or equal to 1"),
        ("model.embedding_dim=0", "`model.embedding_dim` = 0: Input should be greater than or equal to 1"),
        ("trainer.max_epochs=abc", "`trainer.max_epochs` = 'abc': Input should be a valid integer"),
        ("seed=abc", "`seed` = 'abc': Input should be a valid integer"),
        ("model.mlp_hidden=[16,-3]", "`model.mlp_hidden.1` = -3"),
        ("model.mlp_dropout=1.0", "`model.mlp_dropout` = 1.0: Input should be less than 1"),
        ("model.mlp_norm=bogus", "`model.mlp_norm` = 'bogus': Input should be 'none', 'batch' or 'layer'"),
        ("data.source.min_count=x", "`data.source.min_count` = 'x': Input should be a valid integer"),
        ("trainer.val_check_interval=1.5", "`trainer.val_check_interval` = 1.5"),
        ("ckpt_path=/no/such.ckpt", "`ckpt_path` = '/no/such.ckpt': no such checkpoint file"),
        ("+model.no_such_key=3", "DeepFM has no argument `model.no_such_key` (it takes: embedding_dim, "),
        ("data.resident=gpu", "`data.resident` = 'gpu': Input should be 'auto', 'host', 'device' or 'pinned'"),
        ("compile=maybe", "`compile` = 'maybe': Input should be a valid boolean"),
    ],
)
def test_a_bad_value_stops_the_run_before_any_work_naming_key_and_value(tmp_path, override, said):
    with pytest.raises(ConfigError) as err:
        train(make_cfg(tmp_path, [*FAST, override]))
    assert said in str(err.value)
    assert not (tmp_path / "cache").exists(), "the data was built before the config was checked"
    failed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert failed["status"] == "failed" and said in failed["error"]


def test_every_model_and_data_config_passes_the_schema(tmp_path):
    """The schema must not refuse what the project ships: each model and synthetic data config validates."""
    from ctrlab.run_config import validate_run_config
    from tests.helpers import ROOT

    models = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))
    for model in models:
        validate_run_config(make_cfg(tmp_path, [f"model={model}"]))
    for data in ("synthetic_criteo", "synthetic_avazu", "synthetic_ipinyou", "synthetic_sequence"):
        validate_run_config(make_cfg(tmp_path, [f"data={data}"]))


def test_a_run_that_trains_zero_steps_fails(tmp_path):
    with pytest.raises(NoTrainingError, match="trained zero steps"):
        train(make_cfg(tmp_path, [*FAST, "trainer.limit_train_batches=0"]))


@pytest.mark.parametrize(("monitor", "mode"), [("auc", "max"), ("logloss", "min"), ("auc_minus_logloss", "max")])
def test_monitor_sets_what_early_stopping_and_the_best_checkpoint_watch(tmp_path, monitor, mode):
    cfg = make_cfg(tmp_path, [*FAST, f"monitor={monitor}", "trainer.max_epochs=3"])
    for callback in ("model_checkpoint", "early_stopping"):
        assert cfg.callbacks[callback].monitor == f"val/{monitor}" and cfg.callbacks[callback].mode == mode
    metrics = train(cfg)
    assert metrics["monitor"] == f"val/{monitor}" and metrics["max_epochs"] == 3
    assert metrics["best_epoch"] in range(3) and metrics["stopped_early"] in (True, False)
    log = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
    header = log[0].split(",")
    epochs = [r.split(",") for r in log[1:] if r.split(",")[header.index("stage")] == "fit"
              and r.split(",")[header.index(f"val/{monitor}")]]  # fmt: skip
    scores = [float(r[header.index(f"val/{monitor}")]) for r in epochs]
    best = (max if mode == "max" else min)(range(len(scores)), key=scores.__getitem__)
    assert metrics["best_epoch"] == int(epochs[best][header.index("epoch")])


def test_an_unknown_monitor_names_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="`monitor` = 'f1': Input should be 'auc', 'logloss' or 'auc_minus_logloss'"):
        train(make_cfg(tmp_path, [*FAST, "monitor=f1"]))
