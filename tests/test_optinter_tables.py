"""OptInter's tables and figures as reproductions: stage jobs (search -> re-train) inside ``ctrlab.reproduce``,
the planted-truth recovery score, the report's Params / method-count / "without re-train" columns, the
trade-off figure, the wiring of the mutual-information figures, and the make targets."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from ctrlab.data.schema import FeatureMap, Field
from ctrlab.report.collect import collect
from ctrlab.reproduce import EXPERIMENTS, _sweeps, experiment_spec, write_report
from ctrlab.search.artifact import SCHEMA_VERSION, Artifact, Provenance, SpaceRecord
from ctrlab.search.recovery import recovery
from tests.helpers import REPRODUCE, ROOT, make_dry_run, run_module

# --- the planted-truth recovery score ---------------------------------------------------------------------------


def test_recovery_is_the_share_of_each_planted_kind_given_its_method():
    names = [f"f{i}" for i in range(5)]
    fm = FeatureMap("s", [Field(n, 4) for n in names], {"train": 0, "valid": 0, "test": 0},
                    extra={"planted": {"mechanism": "memorize", "pairs": [[0, 1], [3, 2], [1, 4]],
                                       "kinds": ["memorized", "memorized", "factorized"]}})  # fmt: skip
    units = [f"{names[a]}×{names[b]}" for a in range(5) for b in range(a + 1, 5)]  # 10 pairs
    decisions = ["naive"] * 10
    decisions[units.index("f0×f1")] = "memorize"
    decisions[units.index("f2×f3")] = "factorize"  # planted memorized, listed as [3, 2]
    decisions[units.index("f1×f4")] = "factorize"
    decisions[units.index("f0×f4")] = "memorize"  # a no-effect pair, memorized
    artifact = Artifact(
        schema_version=SCHEMA_VERSION,
        spaces=[
            SpaceRecord(
                name="pair_method", units=units, options=["memorize", "factorize", "naive"], decisions=decisions
            )
        ],  # fmt: skip
        provenance=Provenance(kind="random", model={}, data={}, seed=0),
    )
    truth = {"f0×f1": "memorized", "f2×f3": "memorized", "f1×f4": "factorized"}
    want = {"memorized": "memorize", "factorized": "factorize", "none": "naive"}
    direct = {}
    for kind, option in want.items():  # the slow way: pair by pair
        hits = [d == option for u, d in zip(units, decisions, strict=True) if truth.get(u, "none") == kind]
        direct[kind] = {"share": sum(hits) / len(hits), "pairs": len(hits)}
    assert recovery(artifact, fm) == direct
    assert direct["memorized"]["share"] == 0.5 and direct["none"]["share"] == 6 / 7
    real = FeatureMap("real", fm.fields, fm.split_sizes)
    assert recovery(artifact, real) is None  # real data plants nothing


# --- reports from stage-job folders -----------------------------------------------------------------------------


def _job(root: Path, name: str, **metrics) -> Path:
    job = root / name
    job.mkdir(parents=True)
    base = {"status": "completed", "seed": 1, "data": "synthetic_criteo", "paper_dataset": "criteo",
            "data_description": "stand-in", "epochs": 1, "max_epochs": 1}  # fmt: skip
    (job / "metrics.json").write_text(json.dumps(base | metrics))
    return job


def _stage_job(root: Path, name: str, seed: int, auc: float, counts: dict[str, int], recovered: float) -> Path:
    return _job(
        root,
        name,
        model="optinter",
        seed=seed,
        params=2_500_000,
        **{
            "test/auc": auc,
            "test/logloss": 0.45,
            "without_retrain/test/auc": auc - 0.01,
            "without_retrain/test/logloss": 0.47,
        },  # fmt: skip
        searched_architecture={"path": str(root / name / "architecture.json"), "counts": {"pair_method": counts}},
        recovery={"memorized": {"share": recovered, "pairs": 3}, "none": {"share": 0.5, "pairs": 30}},
    )


def test_table_v_vi_and_ix_read_params_counts_recovery_and_without_retrain_from_stage_jobs(tmp_path):
    a = _stage_job(tmp_path, "a", 1, 0.80, {"memorize": 10, "factorize": 5, "naive": 21}, 1.0)
    b = _stage_job(tmp_path, "b", 2, 0.82, {"memorize": 12, "factorize": 3, "naive": 21}, 0.5)
    autofis = _job(tmp_path, "c", model="autofis", paper_row="autofis", **{"test/auc": 0.7, "test/logloss": 0.5},
                   searched_architecture={"counts": {"interaction": {"keep": 7, "drop": 29}}})  # fmt: skip
    jobs = [a, b, autofis]

    md = write_report(experiment_spec("optinter/table5"), jobs, "smoke", tmp_path / "t5")
    text, rows = md.read_text(), list(_csv(md))
    assert "OptInter on Criteo: 75% / — / 50% (n=2)" in text  # mean recovery of the two searches
    optinter = {r["metric"]: r for r in rows if r["model"] == "optinter" and r["dataset"] == "criteo"}
    assert float(optinter["params"]["ours_mean"]) == pytest.approx(2.5) and float(optinter["params"]["paper"]) == 100
    assert float(optinter["auc"]["ours_mean"]) == pytest.approx(0.81)

    md6 = write_report(experiment_spec("optinter/table6"), jobs, "smoke", tmp_path / "t6")
    counts = {(r["model"], r["metric"]): float(r["ours_mean"]) for r in _csv(md6) if r["dataset"] == "criteo"}
    assert counts["optinter", "memorize"] == 11 and counts["optinter", "naive"] == 21
    assert (counts["autofis", "factorize"], counts["autofis", "naive"], counts["autofis", "memorize"]) == (7, 29, 0)
    # the fixed architectures give all 36 pairs of the same data one method
    assert counts["optinter_m", "memorize"] == 36 and counts["optinter_m", "naive"] == 0
    assert counts["naive", "naive"] == 36 and counts["optinter_f", "factorize"] == 36

    for job in (a, b):  # Table IX's runs fill its "w." row
        metrics = json.loads((job / "metrics.json").read_text())
        (job / "metrics.json").write_text(json.dumps(metrics | {"paper_row": "optinter_with_retrain"}))
    md9 = write_report(experiment_spec("optinter/table9"), [a, b], "smoke", tmp_path / "t9")
    auc = {r["model"]: float(r["ours_mean"]) for r in _csv(md9) if r["dataset"] == "criteo" and r["metric"] == "auc"}
    assert auc["optinter_with_retrain"] == pytest.approx(0.81)
    assert auc["optinter_without_retrain"] == pytest.approx(0.80)  # the search stage's without_retrain/test/auc


def _csv(md: Path):
    import csv

    with md.with_suffix(".csv").open() as f:
        yield from csv.DictReader(f)


def test_tradeoff_figure_has_one_point_per_model_and_memorized_size(tmp_path):
    jobs = []
    points = [("optinter_m", 10, 9e6, 0.81), ("optinter", 10, 4e6, 0.815), ("optinter", 5, 2e6, 0.8)]
    for model, s2, params, auc in points:
        job = _job(tmp_path, f"{model}{s2}", model=model, params=int(params), **{"test/auc": auc, "test/logloss": 0.4})
        (job / "config_resolved.yaml").write_text(yaml.safe_dump({"model": {"cross_dim": s2}}))
        jobs.append(job)
    md = write_report(experiment_spec("optinter/figure4a"), jobs, "smoke", tmp_path / "fig")
    points = {r["series"]: r for r in _csv(md)}
    assert set(points) == {"OptInter-M(10)", "OptInter(10)", "OptInter(5)"}
    assert float(points["OptInter(5)"]["params_m"]) == 2.0 and float(points["OptInter(10)"]["auc_mean"]) == 0.815
    assert md.with_suffix(".png").stat().st_size > 0


def test_mutual_information_figures_get_the_searched_artifacts_of_the_jobs(tmp_path, monkeypatch):
    calls = []

    def by_method(artifacts: list[Path], out_dir: Path, scale: str) -> Path:
        calls.append(("by_method", artifacts, scale))
        return out_dir / "figure5.png"

    def heatmap(artifact: Path, out_dir: Path, scale: str, stem: str) -> Path:
        calls.append(("heatmap", artifact, stem))
        return out_dir / f"{stem}.png"

    fake = types.ModuleType("ctrlab.report.architecture_figures")
    fake.write_mi_by_method, fake.write_mi_heatmap = by_method, heatmap
    monkeypatch.setitem(sys.modules, "ctrlab.report.architecture_figures", fake)
    jobs = [_stage_job(tmp_path, n, s, 0.8, {"memorize": 1, "factorize": 1, "naive": 1}, 1.0)
            for n, s in (("a", 1), ("b", 2))]  # fmt: skip
    artifacts = [j / "architecture.json" for j in jobs]
    assert write_report(experiment_spec("optinter/figure5"), jobs, "smoke", tmp_path) == tmp_path / "figure5.png"
    assert write_report(experiment_spec("optinter/figure6"), jobs, "smoke", tmp_path) == tmp_path / "figure6.smoke.png"
    assert calls == [("by_method", artifacts, "smoke"), ("heatmap", artifacts[0], "figure6.smoke")]


# --- experiments and make targets -------------------------------------------------------------------------------


def test_stage_rows_run_their_chain_and_baselines_their_papers_setting():
    sweeps = _sweeps(experiment_spec("optinter/table5"), "lr,dnn,optinter,autofis", "smoke")
    assert sweeps["optinter"] == ["model=optinter", "+search=joint", "paper_row=optinter"]
    assert sweeps["autofis"][:3] == ["model=autofis", "+search=autofis", "paper_row=autofis"]
    # Table IV's values come per data column from paper_setting=optinter (tests/test_paper_setting.py); what stays
    # a row's own override is the optimizer group of LR / FM / Poly2
    assert sweeps["lr"] == ["model=lr", "optimizer=adam"] and sweeps["all"] == ["model=dnn"]
    assert "model.mlp_hidden=[128,128]" in _sweeps(experiment_spec("optinter/table5"), "dnn", "default")["dnn"]
    random = _sweeps(experiment_spec("optinter/table8"), "random", "smoke")["random"]
    assert random == ["model=optinter", "+search=random", "paper_row=random", "seed=range(1,11)"]  # ten draws


TARGETS = ["table-5", "table-6", "table-7", "table-8", "table-9", "figure-4a", "figure-4b", "figure-5", "figure-6"]


@pytest.mark.parametrize("target", TARGETS)
def test_each_make_target_runs_its_experiment_on_stand_ins_or_optinter_real_data(target):
    experiment, data = re.search(REPRODUCE, make_dry_run(f"reproduce-optinter-{target}")).groups()
    assert experiment in EXPERIMENTS and all(d.startswith("synthetic_") for d in data.split(","))
    real = re.search(r"--data (\S+)", make_dry_run(f"reproduce-optinter-{target}", "CRITEO=c", "AVAZU=a", "IPINYOU=i"))
    assert all(d.endswith("_optinter") for d in real.group(1).split(",")), real.group(1)
    assert f"ctrlab.reproduce {experiment} --scale smoke" in make_dry_run("reproduce-optinter-all")


# --- a stage job in a reproduction, resumed ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_stage_job_reproduction_writes_the_table_and_a_rerun_reuses_its_finished_stages(tmp_path):
    args = ["optinter/table9", "--scale", "smoke", "--data", "synthetic_avazu", "data.num_rows=3000", "logger=none"]
    env = {"CTRLAB_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT / "src"), "WANDB_MODE": "disabled"}
    first = run_module("ctrlab.reproduce", *args, env=env, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    table = tmp_path / "results" / "optinter" / "table9.smoke.csv"
    written = table.read_text()
    [job] = (tmp_path / "logs" / "optinter_table9" / "smoke").glob("*/optinter_with_retrain/0")
    metrics = json.loads((job / "metrics.json").read_text())
    assert [s["name"] for s in metrics["stages"]] == ["search", "retrain"]
    assert metrics["paper_row"] == "optinter_with_retrain" and "without_retrain/test/auc" in metrics
    assert metrics["recovery"]["none"]["pairs"] > 0  # the stand-in plants kinds per pair
    [row] = collect([job]).runs.iter_rows(named=True)
    assert row["arch/memorize"] + row["arch/factorize"] + row["arch/naive"] == 276  # Avazu's 24 fields, all pairs
    stamps = {p: p.stat().st_mtime_ns for p in job.glob("stages/*/stage.json")}
    assert len(stamps) == 2

    (job / "metrics.json").unlink()  # as if the job died after its stages, before writing its own metrics
    second = run_module("ctrlab.reproduce", *args, env=env, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "0 of 1 jobs done with the same config, skipping them; resuming job 0 with its finished stages" in (
        second.stdout
    )
    assert {p: p.stat().st_mtime_ns for p in job.glob("stages/*/stage.json")} == stamps  # no stage ran again
    assert json.loads((job / "metrics.json").read_text())["test/auc"] == metrics["test/auc"]
    assert table.read_text() == written
