"""The training entry point end to end on tiny synthetic data: outputs, reproducibility, failure, resume."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ctrlab.lit.module import NonFiniteLossError
from ctrlab.train import ConfigError, train
from tests.helpers import ROOT, run_module

FAST = ["debug=smoke", "data.num_rows=3000", "model.mlp_hidden=[16]", "trainer.max_epochs=2"]


def make_cfg(tmp_path: Path, overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.cache_dir = str(tmp_path / "cache")
        del cfg["hydra"]
    return cfg


def test_run_writes_metrics_config_environment_and_checkpoints(tmp_path):
    metrics = train(make_cfg(tmp_path, FAST))
    run = tmp_path / "run"
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["status"] == "completed"
    for key in ("val/auc", "val/logloss", "test/auc", "test/logloss", "params", "samples_per_s"):
        assert key in on_disk, key
    assert on_disk == json.loads(json.dumps(metrics, default=str))
    assert on_disk["model"] == "deepfm" and on_disk["paper_dataset"] == "criteo"
    assert "ctrlab.models.deepfm.DeepFM" in (run / "config_resolved.yaml").read_text()
    env = json.loads((run / "environment.json").read_text())
    assert env["packages"]["torch"].startswith("2.")
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "checkpoints" / "best.ckpt").exists()
    assert (run / "csv" / "metrics.csv").exists()


def test_same_seed_same_metrics(tmp_path):
    a = train(make_cfg(tmp_path / "a", FAST))
    b = train(make_cfg(tmp_path / "b", FAST))
    c = train(make_cfg(tmp_path / "c", [*FAST, "seed=7"]))
    for key in ("val/auc", "val/logloss", "test/auc", "test/logloss"):
        assert a[key] == b[key], key
    assert a["test/logloss"] != c["test/logloss"]


def test_nonfinite_loss_stops_with_message_and_keeps_logs_and_last_checkpoint(tmp_path):
    # lr=1e30 overflows the weights after one step, so the second step's loss is not finite
    cfg = make_cfg(tmp_path, [*FAST, "optimizer.families.default.lr=1e30"])
    with pytest.raises(NonFiniteLossError, match="global step"):
        train(cfg)
    run = tmp_path / "run"
    failed = json.loads((run / "metrics.json").read_text())
    assert failed["status"] == "failed" and "loss is" in failed["error"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert (run / "config_resolved.yaml").exists()


def test_resume_from_last_checkpoint_continues_training(tmp_path):
    first = train(make_cfg(tmp_path / "first", [*FAST, "trainer.max_epochs=1"]))
    last = tmp_path / "first" / "run" / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg(tmp_path / "second", [*FAST, "trainer.max_epochs=2", f"ckpt_path={last}"]))
    assert first["epochs"] == 1 and resumed["epochs"] == 2
    assert resumed["global_step"] == 2 * first["global_step"]


def test_missing_required_path_names_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("CRITEO", raising=False)
    if not (ROOT / "configs" / "data" / "criteo.yaml").exists():
        pytest.skip("criteo data config not present yet")
    with pytest.raises(ConfigError, match="data.source.path"):
        train(make_cfg(tmp_path, ["data=criteo"]))


def _cli(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {"CTRLAB_ROOT": str(tmp_path), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return run_module("ctrlab.train", *args, env=env, timeout=timeout)


def test_unknown_model_fails_at_start_listing_the_choices(tmp_path):
    out = _cli(["model=no_such_model"], tmp_path)
    assert out.returncode != 0
    assert "model/no_such_model" in out.stderr and "Available options in 'model'" in out.stderr
    assert "deepfm" in out.stderr


def test_wandb_offline_run_and_broken_wandb_never_fail(tmp_path):
    out = _cli([*FAST, "logger=wandb", f"hydra.run.dir={tmp_path}/ok"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert list((tmp_path / "ok" / "wandb").glob("offline-run-*")), "no offline W&B run was written"


def test_failing_wandb_never_fails_a_run(tmp_path, monkeypatch, caplog):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("simulated W&B outage")

    monkeypatch.setattr(wandb, "init", broken_init)
    metrics = train(make_cfg(tmp_path, [*FAST, "logger=wandb"]))
    assert metrics["status"] == "completed"
    assert (tmp_path / "run" / "csv" / "metrics.csv").exists()
    assert "continuing without W&B" in caplog.text


def test_online_wandb_that_times_out_logs_offline_and_the_sweep_stays_offline(tmp_path, monkeypatch, caplog):
    import wandb

    from ctrlab.lit import loggers

    monkeypatch.setattr(loggers, "_online_failure", None)
    real_init, calls = wandb.init, []

    def init_without_network(*args, **kwargs):
        calls.append((kwargs.get("mode"), kwargs["settings"].init_timeout))
        if kwargs.get("mode") != "offline":
            raise wandb.errors.CommError("Timed out initializing run")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", init_without_network)
    online = [*FAST, "logger=wandb", "logger.wandb.offline=false", "logger.wandb.init_timeout=3"]
    first = train(make_cfg(tmp_path / "first", online))
    assert calls == [(None, 3), ("offline", 3)] and first["status"] == "completed"
    assert list((tmp_path / "first" / "run" / "wandb").glob("offline-run-*"))
    second = train(make_cfg(tmp_path / "second", online))  # the next job of the same sweep: no second wait
    assert calls[2:] == [("offline", 3)] and second["status"] == "completed"
    assert caplog.text.count("W&B could not log online") == 1


def test_ddp_two_cpu_processes_over_gloo(tmp_path):
    args = [*FAST, "trainer=ddp", "data.batch_size=256", "trainer.limit_train_batches=4"]
    out = _cli([*args, f"hydra.run.dir={tmp_path}/ddp"], tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MEMBER: 2/2" in out.stderr and "gloo" in out.stderr
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    # each rank takes 4 batches of its shard per epoch, for 2 epochs
    assert metrics["status"] == "completed" and metrics["global_step"] == 8
    assert 0.0 < metrics["test/auc"] < 1.0


@pytest.mark.slow
def test_ddp_evaluation_is_sharded_and_equals_one_process(tmp_path):
    """Two gloo ranks score disjoint shards that cover the split (valid 600 rows, test 1200, in batches of 70),
    and the gathered AUC and log loss equal one process scoring everything."""
    from ctrlab.data import cache
    from tests.ddp_eval import SOURCE
    from tests.helpers import synthetic_source

    cache.prepare(synthetic_source(**SOURCE), tmp_path / "cache")  # built once, before the ranks open it
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"ddp{devices}.json"
        done = run_module("tests.ddp_eval", str(tmp_path / "cache"), str(devices), str(out), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        results[devices] = [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(devices)]
    (one,), (rank0, rank1) = results[1], results[2]
    assert one["rows"] == {"val": 600, "test": 1200}
    for stage in ("val", "test"):
        assert rank0["rows"][stage] + rank1["rows"][stage] == one["rows"][stage]
        assert 0 < rank1["rows"][stage] < one["rows"][stage]
    for ranked in (rank0, rank1):
        assert ranked["metrics"].keys() == one["metrics"].keys()
        for key, value in one["metrics"].items():
            assert ranked["metrics"][key] == pytest.approx(value, abs=1e-6), key


def test_one_optimizer_per_named_parameter_family(tiny_feature_map):
    from omegaconf import OmegaConf

    from ctrlab.lit.module import CTRModule
    from ctrlab.models.deepfm import DeepFM

    model = DeepFM(tiny_feature_map, 4, 1e-4, [8], 0.0, "none")

    def load(name: str):  # as the group sits in the composed config (its interpolations say optimizer.*)
        group = OmegaConf.load(ROOT / "configs" / "optimizer" / f"{name}.yaml")
        return OmegaConf.create({"optimizer": group}).optimizer

    opts = CTRModule(model, load("adam_l2")).configure_optimizers()
    assert len(opts) == 2  # embedding (the `default` Adam) and dense (Adam with L2)
    by_decay = {o.param_groups[0]["weight_decay"]: o for o in opts}
    dense = {id(p) for p in model.parameter_groups()["dense"]}
    assert {id(p) for p in by_decay[1e-4].param_groups[0]["params"]} == dense
    single = CTRModule(model, load("adam")).configure_optimizers()
    assert len(single) == 1 and len(single[0].param_groups[0]["params"]) == len(list(model.parameters()))
    assert type(CTRModule(model, load("adagrad")).configure_optimizers()[0]).__name__ == "Adagrad"
