"""A paper's hyper-parameters per data column (``configs/paper_setting/``, its rows in ``configs/paper_setting_row/``):
OptInter Table IV read back from composed configs against the printed table, each column of a reproduction's
planned jobs with its own values, and a data column without values refused before any job."""

from __future__ import annotations

from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from ctrlab.report.paper import load_papers
from ctrlab.reproduce import (
    CONFIGS,
    EXPERIMENTS,
    _sweeps,
    check_columns,
    experiment_spec,
    implemented_models,
    job_overrides,
)
from ctrlab.run_config import ConfigError, validate_run_config

COLUMNS = ["criteo", "avazu", "ipinyou"]
# Table IV's printed blocks (reference/paper_tables.yaml, `applies_to`): FNN and IPNN share one, OptInter-M / -F /
# OptInter another (lr_a is OptInter's own); AutoFIS takes PIN's network, as the baselines "follow [4]" (PIN)
ROWS = {
    "lr": ["lr"], "fm": ["fm"], "poly2": ["poly2"], "dnn": ["fnn", "ipnn"], "ipnn": ["fnn", "ipnn"],
    "deepfm": ["deepfm"], "pin": ["pin"], "autofis": ["autofis"], "optinter_m": ["optinter_m", "optinter_f"],
    "optinter_f": ["optinter_m", "optinter_f"], "optinter": ["optinter_m", "optinter_f", "optinter"],
}  # fmt: skip
PIN_NETWORK = ("s1", "net", "ln")


def _printed(model: str, column: str) -> dict[str, Any]:
    """The Table IV values that apply to ``model`` on ``column``: General's, then its block's rows' (a printed `lr`
    is lr_o)."""
    rows = {r["model"]: r for r in load_papers()["optinter"]["tables"]["table4"]["rows"]}
    given = [rows["general"][column]]
    if model == "autofis":
        given.append({k: v for k, v in rows["pin"][column].items() if k in PIN_NETWORK})
    given += [rows[row][column] or {} for row in ROWS[model]]
    return {("lr_o" if k == "lr" else k): v for values in given for k, v in values.items()}


def _as_printed(hidden: list[int] | None) -> str | None:
    """An MLP as Table IV prints it, ``[width × depth]``."""
    if not hidden:
        return None
    return f"[{hidden[0]} × {len(hidden)}]" if len(set(hidden)) == 1 else str(hidden)


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides)


def _search_stage(overrides: list[str]):
    """The config of the first stage of a chain (``+search=...`` among ``overrides``), as run_stages composes it."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        job = compose("train", overrides=overrides)
        return compose("train", overrides=[*overrides, *job.stages[0].overrides])


@pytest.mark.parametrize("column", COLUMNS)
def test_every_table_iv_value_reaches_its_models_config_key_on_its_column(column):
    for model in ROWS:
        printed = _printed(model, column)
        adam = ["optimizer=adam"] if model in ("lr", "fm", "poly2") else []  # their configs choose FTRL
        cfg = _compose([f"model={model}", f"data=synthetic_{column}", "paper_setting=optinter", *adam])
        m, families = cfg.model, cfg.optimizer.families
        ours = {
            "bs": cfg.data.batch_size, "opt": families.default._target_.removeprefix("torch.optim."),
            "lr_o": families.default.lr, "eps": families.default.eps, "l2_o": families.embedding.weight_decay,
            "s1": m.get("embedding_dim"), "s2": m.get("cross_dim"), "ln": m.get("mlp_norm") == "layer",
            "net": _as_printed(m.get("mlp_hidden") and list(m.mlp_hidden)),
            "sub_net": m.get("subnet_hidden") and f"[{','.join(map(str, m.subnet_hidden))}]",
            "lr_c": families.get("cross", {}).get("lr"), "l2_c": families.get("cross", {}).get("weight_decay"),
            "lr_a": families.get("arch", {}).get("lr"),
        }  # fmt: skip
        assert families.embedding.lr == families.default.lr and families.embedding.eps == families.default.eps
        if model == "autofis":  # GRDA's mu and c belong to the search stage
            arch = _search_stage(["model=autofis", "+search=autofis", f"data=synthetic_{column}",
                                  "paper_setting=optinter"]).optimizer.families.arch  # fmt: skip
            ours |= {"mu": arch.mu, "c": arch.c}
        want = {k: pytest.approx(v) if isinstance(v, float) else v for k, v in printed.items()}
        assert {k: ours[k] for k in printed} == want, (model, column)


def _planned(experiment: str, scale: str, models: str) -> dict[tuple[str, str], tuple[list[str], Any]]:
    """Each job ``ctrlab.reproduce`` plans (its overrides and composed config) by (model, paper_dataset)."""
    spec, common = experiment_spec(experiment), [f"experiment={experiment}", f"scale={scale}"]
    planned = {}
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for sweep in _sweeps(spec, models, scale).values():
            for job in job_overrides([*common, *sweep]):
                cfg = compose("train", overrides=job)
                [model] = [o.removeprefix("model=") for o in job if o.startswith("model=")]
                planned[model, cfg.data.paper_dataset] = (job, cfg)
    return planned


def test_each_column_of_a_reproduction_runs_with_its_own_table_iv_values():
    planned = _planned("optinter/table5", "smoke", "dnn,optinter_m,optinter")
    jobs = {key: cfg for key, (_, cfg) in planned.items()}
    assert {d for _, d in jobs} == set(COLUMNS)
    hidden = {d: list(jobs["optinter_m", d].model.mlp_hidden) for d in COLUMNS}
    assert hidden == {"criteo": [700] * 5, "avazu": [500] * 5, "ipinyou": [300] * 3}
    avazu = jobs["optinter_m", "avazu"]
    assert (avazu.model.embedding_dim, avazu.model.cross_dim) == (40, 4)
    assert jobs["optinter_m", "ipinyou"].optimizer.families.cross.lr == pytest.approx(1e-6)
    assert jobs["dnn", "avazu"].model.embedding_dim == 40 and jobs["dnn", "criteo"].model.embedding_dim == 20
    assert all(cfg.data.batch_size == 1024 for cfg in jobs.values())  # the smoke scale's batch wins over bs=2000
    # the stage row's search stage: lr_a per column
    search = {d: _search_stage(planned["optinter", d][0]).optimizer.families.arch.lr for d in COLUMNS}
    assert search == pytest.approx({"criteo": 3e-5, "avazu": 3e-5, "ipinyou": 1e-3})


def test_the_default_scales_overrides_win_over_table_iv_and_table_vii_enlarges_per_column():
    jobs = {key: cfg for key, (_, cfg) in _planned("optinter/table5", "default", "dnn").items()}
    assert {d: list(jobs["dnn", d].model.mlp_hidden) for d in COLUMNS} == dict.fromkeys(COLUMNS, [128, 128])
    assert jobs["dnn", "avazu"].model.embedding_dim == 40 and jobs["dnn", "avazu"].data.num_rows == 20000
    t7 = _planned("optinter/table7", "smoke", "dnn,fm,optinter_m")
    assert {key: cfg.model.embedding_dim for key, (_, cfg) in t7.items()} == {
        ("dnn", "criteo"): 200, ("dnn", "avazu"): 700, ("fm", "criteo"): 200, ("fm", "avazu"): 700,
        ("optinter_m", "criteo"): 20, ("optinter_m", "avazu"): 40,  # OptInter keeps Table IV's s1
    }  # fmt: skip


def test_a_data_column_without_table_iv_values_is_refused_naming_the_key_and_the_columns():
    with pytest.raises(SystemExit, match=r"data=frappe: config key `data.paper_dataset` = 'frappe'.*"
                                         r"allowed: criteo, avazu, ipinyou"):  # fmt: skip
        check_columns("optinter/table5", "synthetic_criteo,frappe")
    check_columns("optinter/table7", "criteo_optinter,avazu_optinter")  # real data: the same paper datasets
    with pytest.raises(ConfigError, match=r"`data.paper_dataset` = 'frappe'.*allowed: criteo, avazu, ipinyou"):
        validate_run_config(_compose(["model=optinter", "data=frappe", "paper_setting=optinter"]))


def test_every_model_of_the_optinter_experiments_has_a_table_iv_row():
    # the row is `optional` in train.yaml (a model the paper gives no row runs its own config): a missing file here
    # would silently run a table's row without its setting
    for experiment in (e for e in EXPERIMENTS if e.startswith("optinter/")):
        spec = experiment_spec(experiment)
        rows = spec["models"] or implemented_models(spec["paper"], spec["key"], spec["row_configs"], spec["stage_rows"])
        models = {spec["stage_rows"][r]["model"] if r in spec["stage_rows"] else r for r in rows}
        missing = [m for m in sorted(models) if not (CONFIGS / "paper_setting_row" / f"optinter_{m}.yaml").is_file()]
        assert not missing, (experiment, missing)
        assert _compose([f"experiment={experiment}"]).paper_setting.column.s1 == 20  # it selects Table IV (Criteo)
