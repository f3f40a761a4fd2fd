"""The `ablation`, `debug` and `local` config groups: each bundle changes what it says (in the composed config and
in the built model), a model without the part an ablation removes stops at start, each debug preset runs, and a
user's configs/local/default.yaml reaches the config when present and is not needed when absent."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ctrlab.nn.mlp import MLP
from ctrlab.train import ConfigError, check_config, train
from tests.helpers import ROOT, random_batch, run_module

CONFIGS = ROOT / "configs"
TINY = ["data.num_rows=3000", "data.batch_size=64", "model.mlp_hidden=[16]"]  # a DeepFM run of a few seconds


def compose_cfg(overrides: list[str], config_dir: Path = CONFIGS) -> DictConfig:
    """The config ``python -m ctrlab.train <overrides>`` would run; its ``hydra`` node (the choices made) is
    HydraConfig's, as in a run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run(tmp_path: Path, overrides: list[str]) -> dict:
    """``ctrlab.train.train()`` on the composed config, its run and cache under ``tmp_path``."""
    cfg = compose_cfg(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.cache_dir = str(tmp_path / "cache")
    return train(cfg)


def model_of(cfg: DictConfig, feature_map) -> torch.nn.Module:
    torch.manual_seed(0)
    return instantiate(cfg.model, _partial_=True)(feature_map=feature_map)


MODELS = sorted(str(p.relative_to(CONFIGS / "model").with_suffix("")) for p in (CONFIGS / "model").rglob("*.yaml"))
ABLATIONS = sorted(p.stem for p in (CONFIGS / "ablation").glob("*.yaml"))


# --- ablation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["deepfm", "xdeepint", "dynint_dwp", "poly2"])
def test_ablation_none_is_the_default_and_changes_nothing(model):
    plain = compose_cfg([f"model={model}"])
    assert HydraConfig.get().runtime.choices.ablation == "none"
    assert compose_cfg([f"model={model}", "ablation=none"]) == plain


@pytest.mark.slow  # composes all 38 model configs: ~15 s on 2 busy cores
def test_every_model_config_passes_the_start_check():
    # the check that stops an ablation on a model without its part must not stop any model as configured
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):  # one initialisation: 38 models
        for model in MODELS:
            cfg = compose("train", overrides=[f"model={model}"], return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            with open_dict(cfg):
                del cfg["hydra"]
            check_config(cfg)


@pytest.mark.parametrize("model", ["deepfm", "dcn", "dcn_v2", "xdeepfm", "autoint_plus", "afn_plus"])
def test_interaction_only_drops_the_dnn_and_only_it(model, tiny_feature_map):
    plain, ablated = compose_cfg([f"model={model}"]), compose_cfg([f"model={model}", "ablation=interaction_only"])
    assert plain.model.mlp_hidden is not None and ablated.model.mlp_hidden is None
    assert {**OmegaConf.to_container(plain.model), "mlp_hidden": None} == OmegaConf.to_container(ablated.model)
    check_config(ablated)
    assert isinstance(model_of(plain, tiny_feature_map).mlp, MLP)
    assert model_of(ablated, tiny_feature_map).mlp is None  # the DNN tower is gone from the built model


@pytest.mark.parametrize("model", ["deepfm", "dcn", "dcn_v2", "pnn", "xdeepfm"])
def test_interaction_only_equals_dynint_table2_model_configs(model):
    # Table 2's rows keep their own model configs (the report keys rows by model config); both ways agree
    ablated = compose_cfg([f"model={model}", "ablation=interaction_only"]).model
    assert ablated == compose_cfg([f"model=interaction_only/{model}"]).model


@pytest.mark.parametrize(("model", "ablation", "message"), [
    ("xdeepint", "interaction_only", "XDeepInt has no argument `model.mlp_hidden`"),
    ("dynint_da", "interaction_only", "DynIntDA has no argument `model.mlp_hidden`"),
    ("fm", "interaction_only", "FM has no argument `model.mlp_hidden`"),
    ("dnn", "interaction_only", "`model.mlp_hidden` cannot be null, DNN needs a list[int]"),
    ("wide_and_deep", "interaction_only", "`model.mlp_hidden` cannot be null, WideAndDeep needs a list[int]"),
    ("deepfm", "no_ortho_reg", "DeepFM has no argument `model.ortho_lambda`"),
    ("dynint_da", "no_ortho_reg", "DynIntDA has no argument `model.ortho_lambda`"),
    ("hofm", "shared_embedding", "HOFM has no argument `model.shared_embedding`"),
])  # fmt: skip
def test_ablation_without_its_part_stops_naming_model_and_ablation(model, ablation, message):
    with pytest.raises(ConfigError, match=f"^model={model} with ablation={ablation}: ") as err:
        check_config(compose_cfg([f"model={model}", f"ablation={ablation}"]))
    assert message in str(err.value)


def test_an_unknown_model_key_stops_at_start_listing_the_arguments():
    with pytest.raises(
        ConfigError,
        match=r"model=fm: FM has no argument `model.mlp_hidden` \(it takes: "
        r"embedding_dim, embedding_init_std\)",
    ):
        check_config(compose_cfg(["model=fm", "+model.mlp_hidden=[8]"]))


@pytest.mark.parametrize("model", ["dynint_dgp", "dynint_dwp"])
def test_no_ortho_reg_switches_the_orthogonal_penalty_off(model, tiny_feature_map):
    plain, ablated = compose_cfg([f"model={model}"]), compose_cfg([f"model={model}", "ablation=no_ortho_reg"])
    assert plain.model.ortho_lambda > 0 and ablated.model.ortho_lambda == 0
    batch = random_batch(tiny_feature_map, 16)
    with_reg, without = model_of(plain, tiny_feature_map), model_of(ablated, tiny_feature_map)
    penalty = {m: sum(m.regularization(batch, m.forward_train(batch)).values()) for m in (with_reg, without)}
    if model == "dynint_dwp":  # DGP's U, V start orthogonal: its penalty is 0 until they train
        assert penalty[with_reg] > 0
    assert penalty[without] == 0


def test_shared_embedding_gives_afn_plus_one_table(tiny_feature_map):
    plain = model_of(compose_cfg(["model=afn_plus"]), tiny_feature_map)
    shared = model_of(compose_cfg(["model=afn_plus", "ablation=shared_embedding"]), tiny_feature_map)
    assert plain.dnn_embedding is not plain.embedding and shared.dnn_embedding is shared.embedding
    table = sum(p.numel() for p in plain.dnn_embedding.parameters())
    assert shared.num_parameters() == plain.num_parameters() - table
    assert {id(p) for p in shared.parameter_groups()["embedding"]} == {id(p) for p in shared.embedding.parameters()}
    assert shared(random_batch(tiny_feature_map, 8)).shape == (8,)


def test_an_experiment_can_pick_an_ablation(tmp_path):
    experiment = tmp_path / "experiment" / "probe"
    experiment.mkdir(parents=True)
    (experiment / "no_dnn.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /ablation: interaction_only\n  - _self_\ntask_name: probe\n"
    )
    cfg = compose_cfg(["experiment=probe/no_dnn", f"hydra.searchpath=[file://{tmp_path}]"])
    assert HydraConfig.get().runtime.choices.ablation == "interaction_only" and cfg.model.mlp_hidden is None


@pytest.mark.slow  # 4 jobs in a subprocess: ~20 s on 2 busy cores
def test_ablation_multirun_over_models(tmp_path):
    """The README's ``-m ablation=none,interaction_only model=deepfm,xdeepint``: 4 jobs; xDeepInt has no DNN, so
    its interaction_only job fails at start, recorded, the sweep goes on, and the multirun exits 1 at its end."""
    args = ["-m", "ablation=none,interaction_only", "model=deepfm,xdeepint", "debug=smoke", "data.num_rows=2000",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    done = run_module("ctrlab.train", *args, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stdout[-3000:]  # every job ran; the multirun then reports its failed one
    jobs = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/metrics.json"))]
    by_job = {(j["model"], j["ablation"]): j for j in jobs}
    assert len(jobs) == 4 and set(by_job) == {
        (m, a) for m in ("deepfm", "xdeepint") for a in ("none", "interaction_only")
    }
    assert all(j["status"] == "completed" for key, j in by_job.items() if key != ("xdeepint", "interaction_only"))
    failed = by_job["xdeepint", "interaction_only"]
    assert failed["status"] == "failed"
    assert (
        "model=xdeepint with ablation=interaction_only: XDeepInt has no argument `model.mlp_hidden`"
        in (failed["error"])
    )
    resolved = [OmegaConf.load(p).model for p in (tmp_path / "sweep").glob("*/config_resolved.yaml")]
    deepfm = sorted(str(m.mlp_hidden) for m in resolved if m._target_.endswith("DeepFM"))
    assert deepfm == ["None", "[400, 400, 400]"]
    assert by_job["deepfm", "interaction_only"]["params"] < by_job["deepfm", "none"]["params"]


# --- debug presets --------------------------------------------------------------------------------------------


def test_debug_fdr_runs_one_batch_of_each_loop(tmp_path):
    cfg = compose_cfg(["debug=fdr"])
    assert cfg.trainer.fast_dev_run is True
    metrics = run(tmp_path, ["debug=fdr", *TINY])
    assert metrics["status"] == "completed" and metrics["global_step"] == 1 and "test/auc" in metrics


def test_debug_overfit_drives_the_train_loss_down_on_one_batch(tmp_path):
    cfg = compose_cfg(["debug=overfit"])
    assert cfg.trainer.overfit_batches == 1 and cfg.callbacks.early_stopping is None
    assert cfg.callbacks.model_checkpoint is None and cfg.trainer.enable_checkpointing is False
    metrics = run(tmp_path, ["debug=overfit", *TINY, "trainer.max_epochs=40"])
    assert metrics["status"] == "completed" and metrics["global_step"] == 40  # one batch an epoch, never stopped
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r["train/loss"]]
    assert len(losses) == 40
    # the same batch every epoch: from ~0.7 to a fraction of it (0.78 -> 0.09 when written)
    assert losses[-1] < 0.3 * losses[0]


def test_debug_limit_bounds_every_loop(tmp_path):
    cfg = compose_cfg(["debug=limit"])
    assert (cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches, cfg.trainer.limit_test_batches) == (
        20,
        5,
        5,
    )
    assert cfg.data.num_rows == compose_cfg([]).data.num_rows  # the data in full, unlike smoke
    metrics = run(tmp_path, ["debug=limit", *TINY])  # 2100 train rows / 64 = 33 batches an epoch without it
    assert metrics["status"] == "completed" and metrics["global_step"] == 2 * 20 and metrics["epochs"] == 2


def test_debug_profiler_writes_its_report_into_the_run_folder(tmp_path):
    metrics = run(tmp_path, ["debug=profiler", *TINY, "trainer.limit_train_batches=5"])
    assert metrics["status"] == "completed"
    report = (tmp_path / "run" / "fit-profile.txt").read_text()
    assert "run_training_epoch" in report and "[Strategy]SingleDeviceStrategy.training_step" in report


# --- local ----------------------------------------------------------------------------------------------------


def configs_copy(tmp_path: Path, local: str | None) -> Path:
    """A copy of configs/ without the developer's own local/default.yaml, with ``local`` as it if given."""
    copy = tmp_path / "configs"
    shutil.copytree(CONFIGS, copy, ignore=lambda d, names: ["default.yaml"] if Path(d).name == "local" else [])
    if local is not None:
        (copy / "local" / "default.yaml").write_text(local)
    return copy


def test_local_default_reaches_the_config_and_is_optional(tmp_path):
    absent = compose_cfg(["model=fm"], configs_copy(tmp_path / "a", None))
    assert OmegaConf.to_container(absent.paths)["log_dir"] == "${paths.root_dir}/logs"  # composes without it
    local = "# @package _global_\npaths:\n  log_dir: /elsewhere/logs\n  cache_dir: /elsewhere/cache\n"
    present = compose_cfg(["model=fm"], configs_copy(tmp_path / "b", local))
    assert (present.paths.log_dir, present.paths.cache_dir) == ("/elsewhere/logs", "/elsewhere/cache")
    assert {k: v for k, v in present.items() if k != "paths"} == {k: v for k, v in absent.items() if k != "paths"}
    # the command line still wins over it
    assert compose_cfg(["paths.log_dir=/cli"], configs_copy(tmp_path / "c", local)).paths.log_dir == "/cli"


def test_committed_local_example_composes():
    example = compose_cfg(["local=example"])
    assert "CRITEO" in HydraConfig.get().job.env_set and example.paths.cache_dir.endswith("/ctrlab/cache")


@pytest.mark.slow  # a run in a subprocess on the Criteo reader: ~10-25 s on 2 busy cores
def test_local_env_set_gives_the_data_configs_their_raw_file(tmp_path, monkeypatch):
    """configs/local/example.yaml's way to name raw data: hydra.job.env_set feeds ${oc.env:CRITEO} of data=criteo."""
    criteo = tmp_path / "train.txt"
    rng = random.Random(0)  # label, I1..I13, C1..C26
    rows = [
        [str(rng.randint(0, 1))]
        + [str(rng.randint(0, 9)) for _ in range(13)]
        + [f"{rng.randint(0, 5):08x}" for _ in range(26)]
        for _ in range(300)
    ]
    criteo.write_text("".join("\t".join(r) + "\n" for r in rows))
    local = f"# @package _global_\nhydra:\n  job:\n    env_set:\n      CRITEO: ${{oc.env:CRITEO,{criteo}}}\n"
    monkeypatch.delenv("CRITEO", raising=False)
    out = tmp_path / "run"
    args = [f"--config-path={configs_copy(tmp_path, local)}", "data=criteo", "data.source.min_count=1", "debug=fdr",
            "model.mlp_hidden=[8]", f"hydra.run.dir={out}", f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    done = run_module("ctrlab.train", *args, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["split_sizes"]["train"] == 210  # 70% of the 300 lines
