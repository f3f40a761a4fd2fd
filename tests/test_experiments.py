"""Every experiment file composes with every model it runs, and each model builds (no training here)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ctrlab.report.paper import get_table
from ctrlab.reproduce import EXPERIMENTS, experiment_spec, implemented_models
from tests.helpers import ROOT

CASES = [(exp, model) for exp in EXPERIMENTS
         for model in implemented_models(*[experiment_spec(exp)[k] for k in ("paper", "key", "row_configs")])]


@pytest.mark.parametrize("experiment,model", CASES)
def test_experiment_model_composes_and_builds(experiment, model, tiny_feature_map):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"model={model}", "scale=smoke"])
    net = instantiate(cfg.model, _partial_=True)(feature_map=tiny_feature_map)
    assert net.num_parameters() > 0
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
