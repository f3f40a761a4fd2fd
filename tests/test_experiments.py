"""Every experiment file composes with every model it runs, and each model builds (no training here)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ctrlab.data.schema import FeatureMap, Field
from ctrlab.report.paper import get_table
from ctrlab.reproduce import EXPERIMENTS, experiment_spec, implemented_models
from tests.helpers import ROOT
from tests.test_models_any_data import rich_feature_map


def _models(experiment: str) -> list[str]:
    """The model configs an experiment runs: a table's implemented rows (a chain of stages: its model), a
    figure's ``models``, or the models a sweep or figure names in its sweeper params."""
    spec = experiment_spec(experiment)
    if spec["models"]:
        rows = spec["models"]
    elif spec["kind"] != "table":
        raw = yaml.safe_load((ROOT / "configs" / "experiment" / f"{experiment}.yaml").read_text())
        rows = str(raw["hydra"]["sweeper"]["params"]["model"]).split(",")
    else:
        found = implemented_models(spec["paper"], spec["key"], spec["row_configs"], spec["stage_rows"])
        rows = [m for m in found if m not in spec["derived_rows"]]
    return list(dict.fromkeys(spec["stage_rows"][m]["model"] if m in spec["stage_rows"] else m for m in rows))


def with_crosses(fm: FeatureMap, cfg: DictConfig) -> FeatureMap:
    """``fm`` with every field pair crossed when the config switches crosses on (OptInter's units)."""
    if not cfg.data.crosses.enabled:
        return fm
    pairs = list(itertools.combinations(range(len(fm.fields)), 2))
    return replace(fm, cross_fields=[Field(f"c{u}", 6) for u in range(len(pairs))], cross_pairs=pairs)


CASES = [(exp, model) for exp in EXPERIMENTS for model in _models(exp)]
# report kinds that read a table's rows or a search's artifacts, not one row per swept model key
ARTIFACT_REPORTS = ("table", "architecture_figure", "field_stats")


def _feature_map(cfg, tiny: FeatureMap) -> FeatureMap:
    if cfg.data.source._target_.endswith("SyntheticSequenceSource"):
        return rich_feature_map()  # behaviour-sequence models need a history that shares a target's vocabulary
    # a stand-in with named fields (DPN's MovieLens shapes): models may pick fields by name (model.context_fields)
    names = cfg.data.source.get("field_names")
    return tiny if names is None else FeatureMap("named", [Field(n, 5) for n in names], tiny.split_sizes)


@pytest.mark.parametrize("experiment,model", CASES)
def test_experiment_model_composes_and_builds(experiment, model, tiny_feature_map):
    raw = yaml.safe_load((ROOT / "configs" / "experiment" / f"{experiment}.yaml").read_text())
    data = str(raw["hydra"]["sweeper"]["params"].get("data", "synthetic_criteo")).split(",")[0]  # its first column
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"model={model}", f"data={data}", "scale=smoke"])
    net = instantiate(cfg.model, _partial_=True)(feature_map=with_crosses(_feature_map(cfg, tiny_feature_map), cfg))
    assert net.num_parameters() > 0
    spec = experiment_spec(experiment)
    if spec["kind"] not in ARTIFACT_REPORTS and spec["row_configs"]:  # one config per row
        assert model in spec["row_configs"].values()
    elif spec["kind"] not in ARTIFACT_REPORTS:
        # every swept model key exists, and one names the row (a trade-off figure labels its points itself)
        swept = [k.split(".", 1)[1] for k in raw["hydra"]["sweeper"]["params"] if k.startswith("model.")]
        assert swept and all(OmegaConf.select(cfg.model, k, default="missing") != "missing" for k in swept), swept
        assert cfg.paper_row is not None or spec["kind"] == "tradeoff"
    if model.startswith("interaction_only/"):  # the DNN is gone: fewer parameters than the full model
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            full_cfg = compose("train", overrides=[f"model={model.split('/')[1]}"])
        full = instantiate(full_cfg.model, _partial_=True)(feature_map=tiny_feature_map)
        assert cfg.model.mlp_hidden is None and net.num_parameters() < full.num_parameters()


def test_every_row_of_dynint_tables_1_and_2_has_a_model():
    for key in ("table1", "table2"):
        spec = experiment_spec(f"dynint/{key}")
        rows = get_table("dynint", key).rows
        assert len(implemented_models("dynint", key, spec["row_configs"])) == len(rows), key


@pytest.mark.parametrize(
    "model,paper_optimizer",
    [("lr", "FTRL"), ("fm", "FTRL"), ("deepfm", "Adam"), ("xdeepint", "FTRL"), ("dynint_dwp", "FTRL")],
)
def test_model_configs_choose_their_papers_optimizer_and_the_command_line_wins(model, paper_optimizer):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        chosen = compose("train", overrides=[f"model={model}"]).optimizer.families
        forced = compose("train", overrides=[f"model={model}", "optimizer=adam"]).optimizer.families
    assert chosen.default._target_.endswith(paper_optimizer)
    if model.startswith(("xdeepint", "dynint")):  # G-FTRL's row-wise sparsity on the embedding table
        assert chosen.embedding._target_.endswith("GroupLassoFTRL")
    assert list(forced) == ["default"] and forced.default._target_ == "torch.optim.Adam"


SEARCH_CASES = [(exp, model, space) for exp in EXPERIMENTS for model, space in experiment_spec(exp)["grids"].items()]


@pytest.mark.parametrize("experiment,model,space", SEARCH_CASES)
def test_grids_compose_at_their_corners_and_sweep_only_grid_keys(experiment, model, space, tiny_feature_map):
    assert model in _models(experiment), f"{space} names {model}, which the experiment does not run"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        base = compose(
            "train",
            overrides=[f"experiment={experiment}", f"model={model}", f"grid={space}", "scale=paper"],
            return_hydra_config=True,
        )
        params = {k: str(v).split(",") for k, v in base.hydra.sweeper.params.items() if k.startswith("grid.")}
        assert set(params) == {f"grid.{k}" for k in base.grid}, "every swept value is recorded"
        for corner in (0, -1):  # the smallest and the largest grid point build
            overrides = [f"{k}={v[corner]}" for k, v in params.items()]
            cfg = compose(
                "train", overrides=[f"experiment={experiment}", f"model={model}", f"grid={space}", *overrides]
            )
            net = instantiate(cfg.model, _partial_=True)(feature_map=tiny_feature_map)
            assert net.num_parameters() > 0
            for k, v in params.items():  # the grid value reaches the run
                assert str(cfg.grid[k.split(".", 1)[1]]) == str(yaml.safe_load(v[corner]))


def test_paper_scale_runs_one_grid_per_gridded_model():
    from ctrlab.reproduce import _sweeps

    spec = experiment_spec("dynint/table1")
    assert _sweeps(spec, "lr,deepfm", "default") == {"all": ["model=lr,deepfm"]}
    # a model the experiment shrinks at one scale runs alone with its overrides
    assert _sweeps(spec, "lr,xdeepfm", "default") == {
        "xdeepfm": ["model=xdeepfm", "model.cin_layers=[64,64]"],
        "all": ["model=lr"],
    }
    assert _sweeps(spec, "lr,xdeepfm", "smoke") == {"all": ["model=lr,xdeepfm"]}
    assert _sweeps(spec, "lr,deepfm", "paper") == {
        "lr": ["model=lr", "grid=dynint/ftrl"],
        "deepfm": ["model=deepfm", "grid=dynint/mlp"],
    }
    assert _sweeps(spec, "lr,poly2", "paper")["all"] == ["model=poly2"]


def test_a_multirun_that_never_starts_writes_no_report(capsys):
    from ctrlab.reproduce import main

    code = main(["dynint/table2", "--scale", "smoke", "--models", "interaction_only/deepfm", "no_such_key=1"])
    assert code != 0 and "no runs to report" in capsys.readouterr().out
