"""AIM's tables as reproductions: every experiment and each stage of its chains composes, the FIS / IFS / EDS
recovery score and the FI ratio against hand-made artifacts, the report's header and Huawei column, the make
targets, and (slow) one three-stage reproduction end to end."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from scipy.stats import spearmanr

from ctrlab.data.schema import FeatureMap, Field
from ctrlab.models.aim import AIM
from ctrlab.models.autofis import AutoFIS
from ctrlab.report.collect import collect, fi_ratio_pct
from ctrlab.reproduce import (
    CONFIGS,
    EXPERIMENTS,
    _sweeps,
    experiment_spec,
    implemented_models,
    job_overrides,
    write_report,
)
from ctrlab.run_config import validate_run_config
from ctrlab.search.artifact import SCHEMA_VERSION, Artifact, Provenance, SpaceRecord
from ctrlab.search.recovery import recovery
from ctrlab.search.stages import CHAIN_KEYS, _key
from tests.helpers import REPRODUCE, ROOT, make_dry_run, random_batch, run_module

AIM_EXPERIMENTS = [e for e in EXPERIMENTS if e.startswith("aim/")]
FUNCTIONS = ["inner", "outer", "vector_kernel", "scalar_kernel"]


def _models(experiment: str) -> str:
    spec = experiment_spec(experiment)
    if spec["models"]:  # a figure's or Table 6's (rows that are not models), as ctrlab.reproduce reads them
        return ",".join(spec["models"])
    return ",".join(implemented_models(spec["paper"], spec["key"], spec["row_configs"], spec["stage_rows"]))


@pytest.mark.parametrize("experiment", AIM_EXPERIMENTS)
def test_every_aim_experiment_and_each_stage_of_its_chains_composes(experiment):
    spec = experiment_spec(experiment)
    common = [f"experiment={experiment}", "data=synthetic_avazu,synthetic_criteo"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for name, sweep in _sweeps(spec, _models(experiment), "default").items():
            assert len(job_overrides([*common, "scale=default", *sweep])) >= 2, name  # both paper columns
        for sweep in _sweeps(spec, _models(experiment), "smoke").values():
            jobs = job_overrides([*common, "scale=smoke", *sweep])
            cfg = compose("train", overrides=jobs[0])
            assert cfg.standin == "functions"
            for stage in cfg.get("stages") or []:  # as ctrlab.search.stages composes each stage's run
                passed = [o for o in jobs[0] if _key(o) not in CHAIN_KEYS]
                stage_cfg = compose("train", overrides=[*passed, *stage.overrides, "paths.output_dir=STAGE"])
                validate_run_config(stage_cfg)


def test_table_rows_are_the_papers_with_their_chains():
    rows = _models("aim/table2").split(",")
    assert rows == ["fm", "fwfm", "afm", "ffm", "deepfm", "ipnn", "fi_gnn", "autoint", "xdeepfm", "autogroup",
                    "autofis", "aim"]  # fmt: skip  # AutoFeature: not reproducible (resources)
    sweeps = _sweeps(experiment_spec("aim/table4"), _models("aim/table4"), "smoke")
    assert sweeps["aim"] == ["model=aim", "+search=aim", "paper_row=aim"]
    assert sweeps["aim_ifs_eds"] == ["model=aim", "+search=aim_eds", "paper_row=aim_ifs_eds", "model.functions=[inner]"]
    chain = yaml.safe_load((CONFIGS / "search" / "aim_order4.yaml").read_text())["stages"]
    assert [s["name"] for s in chain] == ["interaction", "interaction3", "interaction4", "embed", "retrain"]
    assert all("model.max_order=4" in s["overrides"] for s in chain[2:])


@pytest.mark.parametrize("table", ["2", "3", "4", "5", "10"])
def test_each_make_target_runs_its_experiment_on_stand_ins_or_aim_real_data(table):
    target = f"reproduce-aim-table-{table}"
    experiment, data = re.search(REPRODUCE, make_dry_run(target)).groups()
    assert experiment == f"aim/table{table}" and experiment in EXPERIMENTS
    assert data == "synthetic_avazu,synthetic_criteo"  # the paper's column order
    assert re.search(r"--data (\S+)", make_dry_run(target, "CRITEO=c", "AVAZU=a")).group(1) == "avazu_aim,criteo_aim"
    assert f"ctrlab.reproduce {experiment} --scale smoke" in make_dry_run("reproduce-aim-all")


@pytest.mark.parametrize("target", ["table-6", "table-7", "table-8", "table-9", "figure-7", "figure-8"])
def test_tables_6_to_9_and_figures_7_8_run_on_the_avazu_column_only(target):
    experiment, data = re.search(REPRODUCE, make_dry_run(f"reproduce-aim-{target}")).groups()
    assert experiment == f"aim/{target.replace('-', '')}" and experiment in EXPERIMENTS
    real = re.search(r"--data (\S+)", make_dry_run(f"reproduce-aim-{target}", "AVAZU=a")).group(1)
    assert data == "synthetic_avazu" and real == "avazu_aim"
    assert f"ctrlab.reproduce {experiment} --scale smoke" in make_dry_run("reproduce-aim-all")


# --- the planted-truth recovery score and the FI ratio ----------------------------------------------------------


def _functions_map() -> FeatureMap:
    planted = {"mechanism": "functions", "pairs": [[0, 1], [1, 3], [2, 4], [0, 4]],
               "functions": ["inner", "weighted", "kernel", "weighted"], "field_dims": [3, 1, 4, 2, 2]}  # fmt: skip
    return FeatureMap("s", [Field(f"f{i}", 4) for i in range(5)], {"train": 0, "valid": 0, "test": 0},
                      extra={"planted": planted})  # fmt: skip


def _artifact(*spaces: SpaceRecord) -> Artifact:
    data = {"fields": [f"f{i}" for i in range(5)]}
    return Artifact(schema_version=SCHEMA_VERSION, spaces=list(spaces),
                    provenance=Provenance(kind="search", model={}, data=data, seed=0))  # fmt: skip


def test_function_recovery_against_a_hand_made_artifact():
    fm = _functions_map()
    units = [f"f{a}×f{b}" for a in range(5) for b in range(a + 1, 5)]  # 10 pairs
    decisions: list[list[str]] = [[] for _ in units]
    weights = [[0.0] * 4 for _ in units]
    for unit, kept, w in [("f0×f1", ["inner", "outer"], [0.9, -0.2, 0, 0]),  # planted inner, inner largest: hit
                          ("f1×f3", ["outer", "vector_kernel"], [0, -1.5, 0.4, 0]),  # weighted, outer largest: miss
                          ("f2×f4", ["outer"], [0, 0.3, 0, 0]),  # kernel: no AIM counterpart, not scored for IFS
                          ("f0×f2", ["inner"], [0.1, 0, 0, 0])]:  # a no-effect pair kept  # fmt: skip
        decisions[units.index(unit)], weights[units.index(unit)] = kept, w
    dims = [["0", "1"], [], ["0", "1", "2"], ["0"], ["0", "1", "2", "3"]]
    artifact = _artifact(
        SpaceRecord(name="interaction_function", units=units, options=FUNCTIONS, subset=True, decisions=decisions,
                    weights=weights),
        SpaceRecord(name="embedding_dim", units=[f"f{i}" for i in range(5)], options=["0", "1", "2", "3"],
                    subset=True, decisions=dims),
    )  # fmt: skip
    got = recovery(artifact, fm)
    # the slow way: planted {f0×f1, f1×f3, f2×f4, f0×f4}, 3 of 4 kept; 5 of the 6 others dropped
    assert got["fis_kept"] == {"share": 0.75, "pairs": 4}
    assert got["fis_dropped"] == {"share": 5 / 6, "pairs": 6}
    assert got["ifs"] == {"share": 0.5, "pairs": 2}  # f0×f1 right, f1×f3 wrong; f2×f4 (kernel) not scored
    useful = [3, 1, 4, 2, 2]  # every field is in a planted pair here
    assert math.isclose(got["eds"]["spearman"], spearmanr([2, 0, 3, 1, 4], useful).statistic)
    real = FeatureMap("real", fm.fields, fm.split_sizes)
    assert recovery(artifact, real) is None  # real data plants nothing
    autofis = _artifact(SpaceRecord(name="interaction", units=units, options=["keep", "drop"],
                                    decisions=["keep" if d else "drop" for d in decisions]))  # fmt: skip
    assert recovery(autofis, fm) == {"fis_kept": got["fis_kept"], "fis_dropped": got["fis_dropped"]}  # no IFS, EDS


def test_fi_ratio_is_the_kept_share_of_all_interactions_of_the_highest_order():
    pairs = [f"f{a}×f{b}" for a in range(5) for b in range(a + 1, 5)]
    triples = ["f0×f1×f2", "f0×f1×f3", "f1×f3×f4"]
    artifact = _artifact(SpaceRecord(name="interaction_function", units=pairs + triples, options=FUNCTIONS,
                                     subset=True, decisions=[["inner"]] * 10 + [["outer"], [], ["inner"]]))  # fmt: skip
    assert fi_ratio_pct(artifact) == pytest.approx(100 * 2 / math.comb(5, 3))  # 2 of the C(5, 3) = 10 triples
    autofis = _artifact(SpaceRecord(name="interaction", units=pairs, options=["keep", "drop"],
                                    decisions=["keep"] * 3 + ["drop"] * 7))  # fmt: skip
    assert fi_ratio_pct(autofis) == pytest.approx(30.0)


def test_report_header_gives_the_recovery_and_huawei_is_private(tmp_path):
    art = tmp_path / "architecture.json"
    units = [f"f{a}×f{b}" for a in range(5) for b in range(a + 1, 5)]
    art.write_text(
        json.dumps(
            _artifact(
                SpaceRecord(
                    name="interaction_function",
                    units=units,
                    options=FUNCTIONS,
                    subset=True,
                    decisions=[["inner"]] * 4 + [[]] * 6,
                )
            ).model_dump()
        )
    )
    jobs = []
    for i, (row, auc) in enumerate([("aim_order2", 0.80), ("autofis_order2", 0.79)]):
        job = tmp_path / str(i)
        job.mkdir()
        metrics = {"status": "completed", "seed": 1, "model": row.split("_")[0], "paper_row": row,
                   "data": "synthetic_avazu", "paper_dataset": "avazu", "data_description": "stand-in",
                   "epochs": 1, "max_epochs": 1, "test/auc": auc, "test/logloss": 0.4,
                   "searched_architecture": {"path": str(art), "counts": {}},
                   "recovery": {"fis_kept": {"share": 0.75, "pairs": 8}, "fis_dropped": {"share": 0.5, "pairs": 20},
                                "eds": {"spearman": 0.6, "fields": 24}}}  # fmt: skip
        (job / "metrics.json").write_text(json.dumps(metrics))
        jobs.append(job)
    assert collect(jobs).runs["fi_ratio_pct"].to_list() == [40.0, 40.0]  # 4 of the 10 pairs
    md = write_report(experiment_spec("aim/table3"), jobs, "smoke", tmp_path / "t3").read_text()
    assert "AIM(2nd) on Avazu: FIS 75% / 50%, EDS +0.60 (n=1)" in md
    assert re.search(r"\| AIM\(2nd\) +\| 0\.8000 \(n=1\) .*\| +40\.0 \(n=1\) \| +16\.0 \|", md), md
    md2 = write_report(experiment_spec("aim/table2"), jobs, "smoke", tmp_path / "t2").read_text()
    assert "*private data*" in md2.split("## Huawei")[1]


def test_table2_rel_impr_is_the_relative_auc_improvement_over_fm(tmp_path):
    """Table 2's "Rel. Impr" (relative AUC improvement over FM, %): ours from our row means beside the paper's;
    a row whose FM column has no runs says so instead of a number."""
    jobs = []
    for i, (row, dataset, auc) in enumerate(
        [
            ("fm", "avazu", 0.70),
            ("fm", "avazu", 0.72),
            ("fwfm", "avazu", 0.73),
            ("aim", "avazu", 0.75),
            ("aim", "avazu", 0.76),
            ("aim", "criteo", 0.8),
        ]
    ):
        job = tmp_path / str(i)
        job.mkdir()
        metrics = {"status": "completed", "seed": i, "model": row, "paper_row": row, "data": f"synthetic_{dataset}",
                   "paper_dataset": dataset, "data_description": "stand-in", "epochs": 1, "max_epochs": 1,
                   "test/auc": auc, "test/logloss": 0.4}  # fmt: skip
        (job / "metrics.json").write_text(json.dumps(metrics))
        jobs.append(job)
    md = write_report(experiment_spec("aim/table2"), jobs, "smoke", tmp_path / "t2")
    cells = {(r["model"], r["dataset"]): r for r in csv.DictReader(md.with_suffix(".csv").open())
             if r["metric"] == "rel_impr_pct"}  # fmt: skip
    fm = (0.70 + 0.72) / 2
    assert float(cells["fwfm", "avazu"]["ours_mean"]) == pytest.approx(100 * (0.73 - fm) / fm)
    assert float(cells["aim", "avazu"]["ours_mean"]) == pytest.approx(100 * (0.755 - fm) / fm)
    assert float(cells["fm", "avazu"]["ours_mean"]) == 0.0 and float(cells["aim", "avazu"]["paper"]) == 1.63
    assert cells["aim", "criteo"]["status"] == "needs fm runs" and cells["ipnn", "avazu"]["status"] == "not run"
    text = md.read_text()
    assert "Rel. Impr (%) ours" in text
    assert re.search(r"\| AIM +\| 0\.7550 ± 0\.0071 \(n=2\) .*\| +6\.34 \(n=2\) \| +1\.63 \| +\+4\.71 \|", text), text


def test_a_chain_whose_order_3_search_kept_nothing_retrains_on_the_lower_orders(tiny_feature_map):
    """Table 3's order-4 chains after an order-3 search that kept nothing: the order-4 pool is empty, its search
    still runs (nothing in `arch` to move) and decides no order-4 unit, and the re-train computes the lower orders
    only (AutoFIS: linear + the one kept pair's gated inner product + MLP; AIM: 2nd-order slots alone)."""
    order2 = ["keep"] + ["drop"] * 9  # (f0, f1) of 5 fields: its 3 triples searched, all dropped
    decided = {"interaction": order2 + ["drop"] * 3}
    weights = {"interaction": [0.5] + [0.0] * 12}
    torch.manual_seed(0)
    search = AutoFIS(tiny_feature_map, 4, 0.1, [8], 0.0, "none", decided, max_order=4, architecture_weights=weights)
    assert search.units_4.shape == (0, 4) and search.parameter_groups()["arch"][0].numel() == 0
    batch = random_batch(tiny_feature_map, 16)
    search(batch).sum().backward()
    assert search.derive() == decided and search.architecture_weights()["interaction"].tolist() == [0.5] + [0.0] * 12
    retrain = AutoFIS(tiny_feature_map, 4, 0.1, [8], 0.0, "none", decided, max_order=4, architecture_weights=weights)
    retrain.eval()
    e = retrain.embedding(batch)
    norm = retrain.gate.norm
    pair = retrain.gate.alpha * ((e[:, 0] * e[:, 1]).sum(-1, keepdim=True) - norm.running_mean) / torch.sqrt(
        norm.running_var + 1e-3)  # fmt: skip
    slow = retrain.linear(batch) + pair.sum(1) + retrain.mlp(e.flatten(1)).squeeze(-1)
    torch.testing.assert_close(retrain(batch), slow)

    aim2 = [["inner"]] + [[] for _ in range(9)]
    aim_weights = {"interaction_function": [[0.7, 0, 0, 0]] + [[0.0] * 4] * 12}
    aim_search = AIM(tiny_feature_map, "interaction", 4, FUNCTIONS, True, 4, 0.1, None, 0.0, "none",
                     {"interaction_function": aim2 + [[]] * 3}, aim_weights)  # fmt: skip
    assert aim_search.interactions.blocks[-1].num_slots == 0
    aim_search(batch).sum().backward()
    carried = aim_search.derive()
    assert carried == {"interaction_function": aim2 + [[]] * 3}
    aim_retrain = AIM(tiny_feature_map, "retrain", 4, FUNCTIONS, True, 4, 0.1, None, 0.0, "none", carried,
                      aim_search.architecture_weights())  # fmt: skip
    assert [b.num_slots for b in aim_retrain.interactions.blocks] == [1, 0, 0]


def test_fi_ratio_of_an_order_whose_pool_was_empty_is_zero_at_that_order():
    """An order-4 search whose pool was empty holds no order-4 unit: the FI ratio is 0 of C(5, 4), at the order
    the search was configured for (provenance), not the highest order its units happen to have."""
    pairs = [f"f{a}×f{b}" for a in range(5) for b in range(a + 1, 5)]
    record = SpaceRecord(name="interaction", units=[*pairs, "f0×f1×f2"], options=["keep", "drop"],
                         decisions=["keep"] + ["drop"] * 10)  # fmt: skip
    artifact = _artifact(record)
    assert fi_ratio_pct(artifact) == 0.0  # order 3 (its highest unit) without a configured order
    artifact.provenance.config = {"model": {"max_order": 4}}
    assert fi_ratio_pct(artifact) == 0.0 and fi_ratio_pct(_artifact(record.model_copy(
        update={"decisions": ["keep"] * 11}))) == pytest.approx(10.0)  # fmt: skip  # 1 of C(5, 3)


# --- one AIM reproduction end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_an_aim_reproduction_runs_its_three_stages_and_scores_them(tmp_path):
    args = ["aim/table4", "--scale", "smoke", "--data", "synthetic_avazu", "--models", "aim", "data.num_rows=3000",
            "model.embedding_dim=4", "model.mlp_hidden=[16]", "logger=none"]  # fmt: skip
    env = {"CTRLAB_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT / "src"), "WANDB_MODE": "disabled"}
    done = run_module("ctrlab.reproduce", *args, env=env, timeout=900)
    assert "written:" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    [job] = (tmp_path / "logs" / "aim_table4" / "smoke").glob("*/aim/0")
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["paper_row"] == "aim"
    assert [s["name"] for s in metrics["stages"]] == ["interaction", "embed", "retrain"]
    assert {"fis_kept", "fis_dropped", "eds"} <= set(metrics["recovery"])  # FIS from stage 1, EDS from stage 2
    assert Path(metrics["searched_architecture"]["path"]).parent.name.startswith("embed-")
    assert "Planted-truth recovery" in next(tmp_path.rglob("table4.smoke.md")).read_text()
