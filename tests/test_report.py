"""ctrlab.report: paper tables resource, run collection, and the paper-vs-reproduced table files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import polars as pl
import pytest
import yaml
from scipy import stats

from ctrlab.report import truth, write_table
from ctrlab.report.__main__ import main
from ctrlab.report.collect import collect
from ctrlab.report.figures import write_figure
from ctrlab.report.paper import Significance, dataset_name, get_table, load_papers
from ctrlab.report.tables import (
    Cell,
    _mark_significance,
    _value,
    build_table,
    column_name,
    params_unit,
    render_markdown,
)
from ctrlab.report.truth import get_claims
from tests.helpers import ROOT

SHARED_TABLES = ROOT.parent / "shared" / "reference" / "paper_tables.yaml"
DESCRIPTIONS = {
    "criteo": ("synthetic_criteo", "synthetic 39-field stand-in, 2,000 rows — not the paper's data"),
    "ipinyou": ("synthetic_ipinyou", "synthetic 16-field stand-in, 2,000 rows — not the paper's data"),
    "avazu": ("avazu", "Avazu train.csv, 9,000 rows"),
}
# test/auc, test/logloss per (model, paper dataset, seed)
RESULTS = {
    ("deepfm", "criteo", 0): (0.80, 0.45),
    ("deepfm", "criteo", 1): (0.81, 0.46),
    ("fm", "criteo", 0): (0.79, 0.47),
    ("fm", "criteo", 1): (0.79, 0.48),
    ("deepfm", "ipinyou", 0): (0.70, 0.0061),
    ("deepfm", "ipinyou", 1): (0.72, 0.0063),
    ("fm", "ipinyou", 0): (0.75, 0.0056),
    ("fm", "ipinyou", 1): (0.76, 0.0058),
}


def _write_job(
    job: Path,
    model: str,
    dataset: str,
    seed: int,
    status: str = "completed",
    auc: float | None = None,
    logloss: float | None = None,
) -> None:
    job.mkdir(parents=True)
    data, description = DESCRIPTIONS[dataset]
    metrics = {
        "model": model,
        "data": data,
        "paper_dataset": dataset,
        "data_description": description,
        "optimizer": "ftrl" if model == "fm" else "adam",
        "split_sizes": {"train": 1400, "valid": 200, "test": 400},
        "seed": seed,
        "params": 1234,
        "status": status,
    }
    if status == "completed":
        metrics |= {
            "epochs": 2 + seed,
            "global_step": 10,
            "train_time_s": 1.5,
            "samples_per_s": 900.0,
            "val/auc": auc,
            "val/logloss": logloss,
            "test/auc": auc,
            "test/logloss": logloss,
        }
    else:
        metrics["error"] = "non-finite loss at step 3\ntraceback..."
    (job / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[list[Path], Path]:
    """Two multirun folders (criteo, ipinyou): 2 models x 2 seeds each, one failed and one missing job."""
    runs = []
    for dataset in ("criteo", "ipinyou"):
        multirun = tmp_path / "multiruns" / dataset
        jobs = [k for k in RESULTS if k[1] == dataset]
        for num, (model, _, seed) in enumerate(jobs):
            _write_job(
                multirun / str(num),
                model,
                dataset,
                seed,
                auc=RESULTS[model, dataset, seed][0],
                logloss=RESULTS[model, dataset, seed][1],
            )
        (multirun / "multirun.yaml").write_text("hydra: {}\n")
        runs.append(multirun)
    _write_job(runs[0] / "4", "dnn", "criteo", 0, status="failed")
    (runs[1] / "4" / ".hydra").mkdir(parents=True)  # died before writing metrics.json
    (runs[1] / "4" / ".hydra" / "overrides.yaml").write_text("- model=dnn\n- data=synthetic_ipinyou\n")
    configs = tmp_path / "configs"
    (configs / "model").mkdir(parents=True)
    for model in ("deepfm", "fm", "dnn"):
        (configs / "model" / f"{model}.yaml").write_text("{}\n")
    return runs, configs


def _csv(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with path.open() as f:
        return {(r["model"], r["dataset"], r["metric"]): r for r in csv.DictReader(f)}


def test_resource_has_all_papers_and_table1():
    papers = load_papers()
    assert set(papers) == {"dynint", "dpn", "optinter", "aim"}
    table = get_table("dynint", "table1")
    assert len(table.rows) == 16 and table.datasets == ("criteo", "avazu", "ipinyou")
    rows = {r["model"]: r for r in table.rows}
    spot = [
        ("dynint", "table1", "dynint_dwp", "criteo", "auc", 0.8132),
        ("dynint", "table1", "lr", "ipinyou", "logloss", 0.005605),
        ("optinter", "table5", "optinter", "ipinyou", "logloss", 0.005604),
    ]
    shared = yaml.safe_load(SHARED_TABLES.read_text()) if SHARED_TABLES.exists() else None
    for paper, key, model, dataset, metric, value in spot:
        row = next(r for r in get_table(paper, key).rows if r["model"] == model)
        assert row[dataset][metric] == value
        if shared is not None:
            source = next(r for r in shared[paper]["tables"][key]["rows"] if r["model"] == model)
            assert source[dataset][metric] == value
    assert rows["dynint_dwp"]["bold"] == ["criteo.auc", "criteo.logloss"]
    assert "protocol" not in papers["dynint"] and "notes" not in papers["dpn"]["tables"]["table1"]


def test_decimals_rule_and_names():
    table = get_table("dynint", "table1")
    assert table.decimals("ipinyou", "logloss") == 6
    assert table.decimals("ipinyou", "auc") == 4 and table.decimals("criteo", "logloss") == 4
    assert dataset_name("ipinyou") == "iPinYou" and dataset_name("criteo") == "Criteo"


def test_collect_counts_failed_and_missing(setup):
    runs, _ = setup
    collection = collect(runs)
    assert collection.runs.height == len(RESULTS)
    assert sorted(s.reason for s in collection.skipped) == ["failed", "missing"]
    failed = next(s for s in collection.skipped if s.reason == "failed")
    assert (failed.model, failed.paper_dataset) == ("dnn", "criteo")


def test_csv_values_order_and_status(setup, tmp_path):
    runs, configs = setup
    md = write_table("dynint", "table1", runs, tmp_path / "out", configs, "smoke")
    rows = _csv(md.with_suffix(".csv"))
    table = get_table("dynint", "table1")
    assert len(rows) == 16 * 3 * 2
    assert list(dict.fromkeys(m for m, _, _ in rows)) == [r["model"] for r in table.rows]

    auc = rows["deepfm", "criteo", "auc"]
    assert float(auc["ours_mean"]) == pytest.approx(0.805)
    assert float(auc["ours_std"]) == pytest.approx(math.sqrt(2 * 0.005**2))
    assert float(auc["paper"]) == 0.8069 and float(auc["diff"]) == pytest.approx(0.805 - 0.8069)
    assert auc["n"] == "2" and auc["status"] == "ok"
    ll = rows["fm", "ipinyou", "logloss"]
    assert float(ll["ours_mean"]) == pytest.approx(0.0057)
    assert float(ll["ours_std"]) == pytest.approx(math.sqrt(2 * 0.0001**2))
    assert float(ll["diff"]) == pytest.approx(0.0057 - 0.005576)
    assert float(rows["fm", "criteo", "auc"]["ours_std"]) == pytest.approx(0.0)

    assert rows["lr", "criteo", "auc"]["status"] == "not yet implemented"
    assert rows["lr", "criteo", "auc"]["paper"] == "0.7924"  # the paper's value is kept on every row
    assert rows["dnn", "criteo", "auc"]["status"] == "failed"
    assert rows["dnn", "ipinyou", "logloss"]["status"] == "not run"
    assert rows["deepfm", "avazu", "auc"]["status"] == "not run"
    assert rows["deepfm", "avazu", "auc"]["n"] == "0"
    assert rows["deepfm", "criteo", "auc"]["data_description"] == DESCRIPTIONS["criteo"][1]


def test_markdown_header_cells_and_footer(setup, tmp_path):
    runs, configs = setup
    text = write_table("dynint", "table1", runs, tmp_path / "out", configs, "smoke").read_text()
    header = text.split("## ")[0]
    assert f"Criteo column: {DESCRIPTIONS['criteo'][1]}" in header
    assert f"iPinYou column: {DESCRIPTIONS['ipinyou'][1]}" in header
    assert "Avazu column: no runs" in header
    assert "**Optimizers**: `adam` for deepfm; `ftrl` for fm" in header
    assert "scale `smoke`" in header and "seeds 0, 1" in header and "2–3 epochs" in header
    assert "not comparable to the paper's in absolute value" in header

    sections = {s.split("\n", 1)[0]: s for s in text.split("## ")[1:]}
    ipinyou = sections["iPinYou"]
    fm = next(line for line in ipinyou.splitlines() if line.startswith("| FM "))
    # logloss on iPinYou is printed with 6 decimals, AUC with 4
    assert "0.005700 ± 0.000141 (n=2)" in fm and "0.005576" in fm and "+0.000124" in fm
    assert "0.7550 ± 0.0071 (n=2)" in fm
    names = [line.split("|")[1].strip() for line in sections["Criteo"].splitlines() if line.startswith("| ")]
    assert names[2:] == [r["name"] for r in get_table("dynint", "table1").rows]
    assert "*not yet implemented*" in next(line for line in ipinyou.splitlines() if line.startswith("| LR "))
    assert "**0.8132**" in sections["Criteo"]  # bold as printed

    footer = text.split("---")[-1]
    assert "8 completed, 1 failed, 1 missing" in footer
    assert "(dnn on criteo): non-finite loss at step 3" in footer
    assert "model=dnn data=synthetic_ipinyou" in footer


def test_cli_writes_and_prints(setup, tmp_path, capsys):
    runs, configs = setup
    out = tmp_path / "cli"
    main(
        [
            "--paper",
            "dynint",
            "--table",
            "table1",
            "--runs",
            str(runs[0]),
            "--runs",
            str(runs[1]),
            "--out",
            str(out),
            "--scale",
            "smoke",
            "--configs",
            str(configs),
        ]
    )
    printed = capsys.readouterr().out
    assert "## Criteo" in printed and (out / "table1.smoke.md").exists() and (out / "table1.smoke.csv").exists()
    assert not [p for p in out.iterdir() if p.suffix == ".tmp"]


def test_refuses_mixed_data_and_unsupported_tables(setup, tmp_path):
    runs, configs = setup
    other = tmp_path / "multiruns" / "real"
    _write_job(other / "0", "lr", "criteo", 0, auc=0.7, logloss=0.5)
    path = other / "0" / "metrics.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"data_description": "Criteo train.txt"}))
    with pytest.raises(ValueError, match="mixes runs on different data"):
        write_table("dynint", "table1", [*runs, other], tmp_path / "out", configs, "smoke")
    with pytest.raises(ValueError, match="table7 .* cannot be filled from runs"):  # an online A/B test, no runs
        write_table("dpn", "table7", runs, tmp_path / "out", configs, "smoke")


def test_experiment_row_mapping_fills_the_paper_row(tmp_path: Path, setup):
    """DynInt Table 1's AutoInt row is run as autoint_plus; the run says so with paper_row."""
    runs, configs = setup
    job = tmp_path / "multiruns" / "mapped" / "0"
    _write_job(job, "autoint_plus", "criteo", 0, auc=0.77, logloss=0.5)
    metrics = json.loads((job / "metrics.json").read_text())
    (job / "metrics.json").write_text(json.dumps({**metrics, "paper_row": "autoint"}))
    (configs / "model" / "autoint_plus.yaml").write_text("{}\n")
    md = write_table(
        "dynint",
        "table1",
        [*runs, job.parent],
        tmp_path / "out",
        configs,
        "smoke",
        row_configs={"autoint": "autoint_plus"},
    )
    cell = _csv(md.with_suffix(".csv"))["autoint", "criteo", "auc"]
    assert float(cell["ours_mean"]) == pytest.approx(0.77) and cell["n"] == "1"
    assert _csv(md.with_suffix(".csv"))["autoint", "avazu", "auc"]["status"] != "not yet implemented"


def test_sweep_table_pools_the_models_of_each_row(tmp_path: Path, setup):
    """DynInt Table 3: rows are layer counts, each cell the mean over DA, DGP and DWP runs (and seeds)."""
    _, configs = setup
    multirun = tmp_path / "multiruns" / "sweep"
    values = {("dynint_da", 0): 0.70, ("dynint_dgp", 0): 0.72, ("dynint_dwp", 0): 0.74, ("dynint_da", 1): 0.71}
    for num, ((model, seed), auc) in enumerate(values.items()):
        _write_job(multirun / str(num), model, "criteo", seed, auc=auc, logloss=0.45)
        path = multirun / str(num) / "metrics.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"paper_row": "3"}))
    md = write_table("dynint", "table3", [multirun], tmp_path / "out", configs, "smoke")
    rows = _csv(md.with_suffix(".csv"))
    cell = next(r for (m, d, k), r in rows.items() if d == "criteo" and k == "auc" and r["name"] == "#Layers=3")
    assert float(cell["ours_mean"]) == pytest.approx(sum(values.values()) / 4) and cell["n"] == "4"
    assert float(cell["paper"]) == pytest.approx(0.8075)
    other = next(r for (m, d, k), r in rows.items() if d == "criteo" and k == "auc" and r["name"] == "#Layers=0")
    assert other["status"] == "not run"
    text = md.read_text()
    assert "`dynint_da`, `dynint_dgp`, `dynint_dwp`" in text and "Rows are values of `num_layers`" in text


def test_grid_points_are_chosen_on_validation_never_on_test(tmp_path):
    """Point A has the better val AUC, point B the better test AUC: the table must report A."""
    multirun = tmp_path / "multiruns" / "grid"
    # (grid point, seed) -> (val AUC, test AUC)
    grid = {
        ("depth=1", 0): (0.70, 0.90),
        ("depth=1", 1): (0.71, 0.91),
        ("depth=2", 0): (0.80, 0.60),
        ("depth=2", 1): (0.79, 0.62),
    }
    for num, ((point, seed), (val, test)) in enumerate(grid.items()):
        _write_job(multirun / str(num), "deepfm", "criteo", seed, auc=test, logloss=0.5)
        metrics = json.loads((multirun / str(num) / "metrics.json").read_text())
        metrics |= {"grid_point": point, "val/auc": val}
        (multirun / str(num) / "metrics.json").write_text(json.dumps(metrics))
    (multirun / "multirun.yaml").write_text("hydra: {}\n")
    configs = tmp_path / "configs"
    (configs / "model").mkdir(parents=True)
    (configs / "model" / "deepfm.yaml").write_text("{}\n")
    md = write_table("dynint", "table1", [multirun], tmp_path / "out", configs, "paper")
    cell = _csv(md.with_suffix(".csv"))["deepfm", "criteo", "auc"]
    assert float(cell["ours_mean"]) == pytest.approx(0.61) and cell["n"] == "2"
    assert "deepfm on criteo: `depth=2` (val/auc 0.7950, best of 2)" in md.read_text()


def _record_scale(job: Path, scale: str | None) -> None:
    # what Hydra writes into every job folder; the report reads the scale from it
    (job / ".hydra").mkdir(exist_ok=True)
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"scale": scale}}}}))


def test_cli_reads_the_scale_from_the_runs(setup, tmp_path, capsys):
    runs, configs = setup
    for job in runs[0].iterdir():
        if job.is_dir():
            _record_scale(job, "default")
    out = tmp_path / "cli"
    main(
        ["--paper", "dynint", "--table", "table1", "--runs", str(runs[0]), "--out", str(out), "--configs", str(configs)]
    )
    assert (out / "table1.default.md").exists() and "scale `default`" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a --scale the runs contradict
        main(
            [
                "--paper",
                "dynint",
                "--table",
                "table1",
                "--runs",
                str(runs[0]),
                "--out",
                str(out),
                "--configs",
                str(configs),
                "--scale",
                "smoke",
            ]
        )
    assert "runs were made at scale default" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # runs that record no scale, and no --scale
        main(
            [
                "--paper",
                "dynint",
                "--table",
                "table1",
                "--runs",
                str(runs[1]),
                "--out",
                str(out),
                "--configs",
                str(configs),
            ]
        )
    assert "pass --scale" in capsys.readouterr().err


# test AUCs per seed: DynInt-DWP against two baselines, DeepFM the better one on mean AUC
DWP = [0.700, 0.702, 0.701]
DEEPFM = {"far": [0.690, 0.691, 0.6905], "near": [0.6995, 0.7010, 0.7000]}
FM = [0.650, 0.651, 0.652]


def _significance_runs(tmp_path: Path, deepfm: list[float], seeds: int = 3) -> tuple[list[Path], Path]:
    multirun = tmp_path / "multiruns" / "sig"
    jobs = [("dynint_dwp", DWP), ("deepfm", deepfm), ("fm", FM)]
    num = 0
    for model, aucs in jobs:
        for seed, auc in enumerate(aucs[:seeds]):
            _write_job(multirun / str(num), model, "criteo", seed, auc=auc, logloss=1.0 - auc)
            num += 1
    configs = tmp_path / "configs"
    (configs / "model").mkdir(parents=True)
    for model, _ in jobs:
        (configs / "model" / f"{model}.yaml").write_text("{}\n")
    return [multirun], configs


@pytest.mark.parametrize("case", ["far", "near"])
def test_significance_marks_follow_an_independent_welch_test(tmp_path, case):
    """The mark appears exactly when scipy's Welch test on the raw numbers gives p < 0.005."""
    runs, configs = _significance_runs(tmp_path, DEEPFM[case])
    md = write_table("dynint", "table1", runs, tmp_path / "out", configs, "default")
    expected_p = stats.ttest_ind(DWP, DEEPFM[case], equal_var=False).pvalue
    assert (expected_p < 0.005) == (case == "far")  # the two cases straddle the threshold
    cell = _csv(md.with_suffix(".csv"))["dynint_dwp", "criteo", "auc"]
    assert cell["best_baseline"] == "deepfm" and float(cell["p_value"]) == pytest.approx(expected_p)
    assert cell["significance"] == ("better" if case == "far" else "")
    # logloss = 1 - auc: the same test, and better means lower
    ll = _csv(md.with_suffix(".csv"))["dynint_dwp", "criteo", "logloss"]
    assert ll["significance"] == cell["significance"]
    text = md.read_text()
    dwp_line = next(line for line in text.splitlines() if line.startswith("| DynInt-DWP"))
    assert ("▲" in dwp_line) == (case == "far") and "▼" not in dwp_line
    assert "Welch t-test" in text and "p < 0.005" in text and "Best baseline (ours): AUC DeepFM" in text
    assert not any(_csv(md.with_suffix(".csv"))[m, "criteo", "auc"]["p_value"] for m in ("deepfm", "fm"))


def test_significance_marks_a_worse_proposed_model(tmp_path):
    runs, configs = _significance_runs(tmp_path, [0.720, 0.721, 0.7205])
    md = write_table("dynint", "table1", runs, tmp_path / "out", configs, "default")
    assert _csv(md.with_suffix(".csv"))["dynint_dwp", "criteo", "auc"]["significance"] == "worse"
    assert "▼" in next(line for line in md.read_text().splitlines() if line.startswith("| DynInt-DWP"))


def test_one_seed_gives_no_test(tmp_path):
    runs, configs = _significance_runs(tmp_path, DEEPFM["far"], seeds=1)
    md = write_table("dynint", "table1", runs, tmp_path / "out", configs, "smoke")
    rows = _csv(md.with_suffix(".csv"))
    assert rows["dynint_dwp", "criteo", "auc"]["p_value"] == ""
    assert rows["dynint_dwp", "criteo", "auc"]["significance"] == ""
    text = md.read_text()
    assert "no test made: fewer than 2 seeds" in text and "▲" not in text.split("## ")[1]


def test_dpn_also_requires_its_0_001_auc_gap(tmp_path):
    """DPN calls 0.001 AUC significant: a tiny but consistent gap passes the t-test and still gets no mark."""
    table = get_table("dpn", "table1")
    assert table.significance == Significance(0.005, 0.001, table.significance.source)
    ours, base = [0.8000, 0.8001, 0.8002], [0.7995, 0.7996, 0.7997]  # gap 0.0005, p far below 0.005
    assert stats.ttest_ind(ours, base, equal_var=False).pvalue < 0.005
    cells = [
        Cell("feature_based_dpn", "F", "criteo", "auc", 0.8001, 1e-4, 3, None, "ok"),
        Cell("cin", "CIN", "criteo", "auc", 0.7996, 1e-4, 3, None, "ok"),
    ]
    marked, best = _mark_significance(
        table, cells, {("feature_based_dpn", "criteo", "auc"): ours, ("cin", "criteo", "auc"): base}
    )
    assert best == {("criteo", "auc"): "CIN"} and marked[0].p_value < 0.005 and marked[0].significance == ""


# --- the stand-in's truth: oracle row, plateau check, planted-truth claims -------------------------------------

# test AUC per seed on the Criteo stand-in (log loss = 1 - AUC); oracle AUC 0.75, log loss 0.25
STANDIN = {
    "lr": [0.700, 0.702, 0.701],
    "fm": [0.720, 0.722, 0.719],
    "dnn": [0.730, 0.735],
    "deepfm": [0.728, 0.733, 0.731],
    "xdeepint": [0.7305, 0.7295, 0.7300],
    "dynint_da": [0.735],
    "dynint_dwp": [0.733, 0.737],
}
ORACLE = {"auc": 0.75, "logloss": 0.25}
DEEP = ["dnn", "deepfm"]  # the DNN-based rows that ran
MAX_EPOCHS = 10


def _standin_job(
    job: Path,
    model: str,
    dataset: str,
    seed: int,
    auc: float,
    oracle: dict | None,
    stopped: bool,
    description: str | None = None,
) -> None:
    """A completed run with the fields a stand-in run writes (oracle, planted mechanism, plateau facts)."""
    _write_job(job, model, dataset, seed, auc=auc, logloss=1.0 - auc)
    metrics = json.loads((job / "metrics.json").read_text())
    metrics |= {
        "epochs": 4 + seed if stopped else MAX_EPOCHS,
        "max_epochs": MAX_EPOCHS,
        "stopped_early": stopped,
        "best_epoch": 1 + seed if stopped else MAX_EPOCHS - 1,
        "monitor": "val/auc",
    }
    if oracle is not None:
        metrics |= {
            "oracle": oracle,
            "oracle_valid": {"auc": oracle["auc"] - 0.001, "logloss": 0.26},
            "planted_mechanism": "interactions",
        }
    if description is not None:
        metrics |= {"data": "avazu", "data_description": description}
    (job / "metrics.json").write_text(json.dumps(metrics))


def _configs(tmp_path: Path, models) -> Path:
    configs = tmp_path / "configs"
    (configs / "model").mkdir(parents=True, exist_ok=True)
    for model in models:
        (configs / "model" / f"{model}.yaml").write_text("{}\n")
    return configs


@pytest.fixture
def standin(tmp_path: Path) -> tuple[list[Path], Path]:
    """DynInt Table 1 rows on the Criteo stand-in (with its oracle) and LR, FM on real Avazu (no oracle).
    LR never stops early; FM stops early in 2 of 3 seeds; the others always do."""
    multirun = tmp_path / "multiruns" / "standin"
    num = 0
    for model, aucs in STANDIN.items():
        for seed, auc in enumerate(aucs):
            _standin_job(
                multirun / str(num),
                model,
                "criteo",
                seed,
                auc,
                ORACLE,
                stopped=model != "lr" and not (model == "fm" and seed == 2),
            )
            num += 1
    for model in ("lr", "fm"):
        for seed in range(2):
            _standin_job(
                multirun / str(num),
                model,
                "avazu",
                seed,
                0.70 + 0.01 * seed,
                None,
                stopped=True,
                description="Avazu train.csv, 9,000 rows",
            )
            num += 1
    (multirun / "multirun.yaml").write_text("hydra: {}\n")
    return [multirun], _configs(tmp_path, STANDIN)


def _section(text: str, title: str) -> str:
    return next(s for s in text.split("\n## ")[1:] if s.startswith(title + "\n"))


def test_oracle_row_and_gaps_on_a_standin_none_on_real_data(standin, tmp_path):
    runs, configs = standin
    md = write_table("dynint", "table1", runs, tmp_path / "out", configs, "default")
    rows = _csv(md.with_suffix(".csv"))
    fm = rows["fm", "criteo", "auc"]
    assert float(fm["oracle"]) == 0.75
    assert float(fm["gap_to_oracle"]) == pytest.approx(sum(STANDIN["fm"]) / 3 - 0.75)
    ll = rows["fm", "criteo", "logloss"]
    assert float(ll["gap_to_oracle"]) == pytest.approx(1 - sum(STANDIN["fm"]) / 3 - 0.25)  # above the oracle: > 0
    assert float(ll["gap_to_oracle"]) > 0
    assert rows["lr", "avazu", "auc"]["oracle"] == "" and rows["lr", "avazu", "auc"]["gap_to_oracle"] == ""
    assert rows["pnn", "criteo", "auc"]["oracle"] == "0.75" and rows["pnn", "criteo", "auc"]["gap_to_oracle"] == ""

    text = md.read_text()
    criteo, avazu = _section(text, "Criteo"), _section(text, "Avazu")
    oracle_line = next(line for line in criteo.splitlines() if line.startswith("| Oracle (true model) "))
    assert "0.7500" in oracle_line and "0.2500" in oracle_line
    assert "AUC − oracle" in criteo and "LogLoss − oracle" in criteo
    fm_line = next(line for line in criteo.splitlines() if line.startswith("| FM "))
    assert _fmt_gap(sum(STANDIN["fm"]) / 3 - 0.75) in fm_line
    assert "Oracle" not in avazu and "− oracle" not in avazu
    header = text.split("\n## ")[0]
    assert "planted mechanism `interactions`; oracle AUC 0.75, LogLoss 0.25" in header
    assert "Avazu column: Avazu train.csv, 9,000 rows (`data=avazu`); no oracle (real data" in header
    assert "disagree" not in header


def _fmt_gap(gap: float) -> str:
    return f"{gap:+.4f}"


def test_a_real_data_collection_has_no_oracle(setup, tmp_path):
    runs, configs = setup
    text = write_table("dynint", "table1", runs, tmp_path / "out", configs, "smoke").read_text()
    assert "Oracle" not in text and "− oracle" not in text and "Planted-truth checks on" not in text
    assert "Planted-truth checks: none — the claims (LR < FM;" in _section(text, "Criteo")


def test_runs_that_disagree_on_the_oracle_are_named(standin, tmp_path):
    runs, configs = standin
    path = runs[0] / "0" / "metrics.json"  # an LR run on the Criteo stand-in
    path.write_text(json.dumps(json.loads(path.read_text()) | {"oracle": {"auc": 0.76, "logloss": 0.25}}))
    text = write_table("dynint", "table1", runs, tmp_path / "out", configs, "default").read_text()
    runs_criteo = sum(len(v) for v in STANDIN.values())
    assert (
        f"the runs disagree on the oracle ({runs_criteo} of {runs_criteo} runs record one; "
        f"AUC 0.750000–0.760000, LogLoss 0.250000–0.250000): the mean is shown"
    ) in text
    mean = (0.75 * (runs_criteo - 1) + 0.76) / runs_criteo
    oracle_line = next(line for line in _section(text, "Criteo").splitlines() if line.startswith("| Oracle"))
    assert "runs disagree" in oracle_line and f"{mean:.4f}" in oracle_line


def test_plateau_check_flags_rows_that_never_stopped_early(standin, tmp_path):
    runs, configs = standin
    criteo = _section(write_table("dynint", "table1", runs, tmp_path / "out", configs, "default").read_text(), "Criteo")
    lines = {line[2:].split(":")[0]: line for line in criteo.splitlines() if line.startswith("- ")}
    assert lines["LR"] == (
        "- LR: 10 epochs of 10; early stopping fired in 0 of 3 runs; selected epoch 9 on "
        "val/auc — **possibly not converged**: the budget ended before the monitor plateaued"
    )
    assert lines["FM"] == "- FM: 4–10 epochs of 10; early stopping fired in 2 of 3 runs; selected epoch 1–9 on val/auc"
    assert "possibly not converged" not in lines["DeepFM"] and "PNN" not in lines  # PNN: no runs, no line
    assert "1 of 7 rows never stopped early" in criteo


def test_planted_truth_claims_follow_an_independent_welch_test(standin, tmp_path):
    runs, configs = standin
    collection = collect(runs)
    result = build_table(get_table("dynint", "table1"), collection, configs, "default")
    got = {r.claim.text: r for r in result.claims["criteo"]}
    assert "avazu" not in result.claims  # real data: no claims decided

    def side(models):
        return [a for m in models for a in STANDIN[m]]

    expected = {  # claim -> (left rows, right rows, test)
        "LR < FM": (["lr"], ["fm"], "less"),
        "FM < deep models (the DNN-based rows, pooled)": (["fm"], DEEP, "less"),
        "deep models (the DNN-based rows, pooled) < xDeepInt": (DEEP, ["xdeepint"], "less"),
        "xDeepInt <= DynInt variants (pooled)": (["xdeepint"], ["dynint_da", "dynint_dwp"], "at_most"),
    }
    for text, (left, right, test) in expected.items():
        lv, rv = side(left), side(right)
        p = stats.ttest_ind(rv, lv, equal_var=False).pvalue
        diff = sum(rv) / len(rv) - sum(lv) / len(lv)
        holds = diff > 0 and p < 0.05 if test == "less" else not (diff < 0 and p < 0.05)
        assert got[text].p_value == pytest.approx(p) and got[text].diff == pytest.approx(diff)
        assert got[text].verdict == ("yes" if holds else "no")
    # the fixture's numbers give each verdict: deep models do not beat xDeepInt (xDeepInt is below their mean)
    assert [got[t].verdict for t in expected] == ["yes", "yes", "no", "yes"]

    best = max(sum(v) / len(v) for v in STANDIN.values())  # DynInt-DWP, 0.735 (DynInt-DA ties)
    near = got["best row within 0.02 AUC of the oracle"]
    assert near.verdict == "yes" and near.diff == pytest.approx(0.75 - best)

    text = render_markdown(result)
    criteo = _section(text, "Criteo")
    lr_fm = got["LR < FM"]
    assert (
        f"- LR < FM: yes — right − left = {lr_fm.diff:+.4f} AUC (n = 3 runs of LR vs 3 of FM), p = {lr_fm.p_value:.2g}"
    ) in criteo
    assert "(n = 3 runs of FM vs 5 of DNN, DeepFM)" in criteo  # the deep rows that ran
    assert "Planted-truth checks: none" in _section(text, "Avazu")


def test_claims_with_one_run_a_side_are_not_tested(standin, tmp_path):
    runs, configs = standin
    one_seed = [
        job for job in runs[0].iterdir() if job.is_dir() and json.loads((job / "metrics.json").read_text())["seed"] == 0
    ]
    result = build_table(get_table("dynint", "table1"), collect(one_seed), configs, "default")
    got = {r.claim.text: r for r in result.claims["criteo"]}
    assert got["LR < FM"].verdict == "not tested (n<2)" and got["LR < FM"].p_value is None
    assert got["LR < FM"].diff == pytest.approx(STANDIN["fm"][0] - STANDIN["lr"][0])
    # a pooled side counts the runs of all its rows: one seed of DNN and DeepFM is 2 runs
    deep = got["FM < deep models (the DNN-based rows, pooled)"]
    assert deep.verdict == "not tested (n<2)" and "(n = 1 run of FM vs 2 of DNN, DeepFM)" in deep.detail
    assert got["best row within 0.02 AUC of the oracle"].verdict == "yes"


def test_sweep_tables_get_the_oracle_row(tmp_path):
    multirun = tmp_path / "multiruns" / "sweep"
    for num, (model, auc) in enumerate([("dynint_da", 0.70), ("dynint_dgp", 0.72)]):
        _standin_job(multirun / str(num), model, "criteo", 0, auc, ORACLE, stopped=True)
        path = multirun / str(num) / "metrics.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"paper_row": "3"}))
    md = write_table("dynint", "table3", [multirun], tmp_path / "out", _configs(tmp_path, []), "smoke")
    cell = next(
        r
        for (m, d, k), r in _csv(md.with_suffix(".csv")).items()
        if d == "criteo" and k == "auc" and r["name"] == "#Layers=3"
    )
    assert float(cell["gap_to_oracle"]) == pytest.approx(0.71 - 0.75)
    assert "| Oracle (true model) " in _section(md.read_text(), "Criteo")
    assert "#Layers=3: 4 epochs of 10; early stopping fired in 2 of 2 runs" in md.read_text()


def test_every_claim_names_rows_of_its_table_and_bad_claims_are_refused(monkeypatch):
    claims_file = truth._claims_file()
    for paper, tables in claims_file["claims"].items():
        for key in tables:
            assert get_claims(get_table(paper, key))  # rows, metric and test all valid
    bad = {
        "alpha": 0.05,
        "claims": {"dynint": {"table1": [{"claim": "X", "test": "less", "left": ["lr"], "right": ["nope"]}]}},
    }
    monkeypatch.setattr(truth, "_claims_file", lambda: bad)
    with pytest.raises(ValueError, match="rows nope are not rows of the table"):
        get_claims(get_table("dynint", "table1"))
    bad["claims"]["dynint"]["table1"][0] |= {"right": ["fm"], "test": "beats"}
    with pytest.raises(ValueError, match="test='beats'; allowed: less, at_most, near_oracle"):
        get_claims(get_table("dynint", "table1"))


def test_figures_name_the_oracle_on_a_standin(tmp_path):
    multirun = tmp_path / "multiruns" / "figure"
    for num, (k, auc) in enumerate([("2", 0.70), ("4", 0.72)]):
        _standin_job(multirun / str(num), "dynint_dgp", "criteo", 0, auc, ORACLE, stopped=True)
        path = multirun / str(num) / "metrics.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"paper_row": k}))
    spec = {
        "paper": "dynint",
        "key": "fig",
        "kind": "figure",
        "label": "Figure X",
        "caption": "c",
        "x_label": "K",
        "claim": "it rises",
    }
    text = write_figure(spec, [multirun], tmp_path / "out", "smoke").read_text()
    assert (
        "- **Oracle** (the stand-in's true click probability, Criteo test split; dashed): AUC 0.7500, "
        "LogLoss 0.2500" in text
    )


def test_parameters_are_counted_and_scaled_as_each_paper_prints_them():
    """DPN counts parameters without the embedding tables and prints thousands; OptInter counts all, in millions."""
    runs = pl.DataFrame({"params": [2_000_000], "dense_params": [43_000]})
    dpn, optinter = get_table("dpn", "table12"), get_table("optinter", "table5")
    assert (params_unit(dpn), params_unit(optinter)) == ("k", "M")
    assert runs.select(_value(dpn, "params")).item() == pytest.approx(43.0)
    assert runs.select(_value(optinter, "params")).item() == pytest.approx(2.0)
    assert (column_name(dpn, "params"), column_name(optinter, "auc")) == ("Params (k)", "AUC")


def test_dpn_table5_oracle_row_scores_each_test_group(tmp_path):
    """On the sequence stand-in the oracle scores the whole test split and each of KFAtt's groups: DPN Table 5's
    All / New / inFreq columns each get the oracle's value and a gap."""
    oracle = {"auc": 0.80, "logloss": 0.40, "auc_new": 0.78, "auc_infreq": 0.76}
    multirun = tmp_path / "multiruns" / "seq"
    for num, (model, seed) in enumerate((m, s) for m in ("din", "sdpn") for s in (1, 2)):
        job = multirun / str(num)
        job.mkdir(parents=True)
        auc = 0.70 + 0.01 * seed + (0.02 if model == "sdpn" else 0.0)
        metrics = {
            "model": model, "data": "synthetic_sequence", "paper_dataset": "amazon_electronics",
            "data_description": "synthetic behaviour sequences — not the paper's data", "optimizer": "adam",
            "split_sizes": {"train": 1400, "valid": 200, "test": 400}, "seed": seed, "params": 1, "status": "completed",
            "epochs": 3, "val/auc": auc, "val/logloss": 0.5, "test/auc": auc, "test/logloss": 0.5,
            "test/auc_new": auc - 0.03, "test/auc_infreq": auc - 0.05, "oracle": oracle,
            "oracle_valid": {"auc": 0.79, "logloss": 0.41},
        }  # fmt: skip
        (job / "metrics.json").write_text(json.dumps(metrics))
    (multirun / "multirun.yaml").write_text("hydra: {}\n")
    configs = _configs(tmp_path, ("din", "sdpn"))
    md = write_table("dpn", "table5", [multirun], tmp_path / "out", configs, "default")
    rows = _csv(md.with_suffix(".csv"))
    for metric, value, shift in (("auc_all", 0.80, 0.0), ("auc_new", 0.78, 0.03), ("auc_infreq", 0.76, 0.05)):
        din = rows["din", "amazon_electronics", metric]
        assert float(din["oracle"]) == value
        assert float(din["gap_to_oracle"]) == pytest.approx(0.715 - shift - value)
    oracle_line = next(line for line in md.read_text().splitlines() if line.startswith("| Oracle (true model) "))
    assert "0.8000" in oracle_line and "0.7800" in oracle_line and "0.7600" in oracle_line
    assert "New − oracle" in md.read_text() and "inFreq − oracle" in md.read_text()


def test_dpn_cost_section_puts_our_seconds_per_epoch_beside_the_papers(tmp_path):
    """DPN Table 2c prints CPU seconds per epoch: ours is train_time_s / epochs, mean over the row's runs."""
    multirun = tmp_path / "multiruns" / "cost"
    for num, (seed, train_s) in enumerate(((1, 30.0), (2, 50.0))):
        job = multirun / str(num)
        job.mkdir(parents=True)
        metrics = {
            "model": "dnn", "data": "synthetic_movielens_tag", "paper_dataset": "movielens_tag",
            "data_description": "synthetic 3-field stand-in — not the paper's data", "optimizer": "adam",
            "split_sizes": {"train": 1400, "valid": 200, "test": 400}, "seed": seed, "params": 1, "dense_params": 2000,
            "status": "completed", "epochs": 5, "train_time_s": train_s, "val/auc": 0.7, "val/logloss": 0.5,
            "test/auc": 0.7, "test/logloss": 0.5,
        }  # fmt: skip
        (job / "metrics.json").write_text(json.dumps(metrics))
    (multirun / "multirun.yaml").write_text("hydra: {}\n")
    md = write_table("dpn", "table2c", [multirun], tmp_path / "out", _configs(tmp_path, ["dnn"]), "default")
    table = get_table("dpn", "table2c")
    dnn = next(r for r in table.rows if r["model"] == "dnn")
    cost = md.read_text().split("Cost: seconds per epoch")[1]
    dnn_line = next(line for line in cost.splitlines() if line.startswith(f"| {dnn['name']} "))
    paper = table.value(dnn, "movielens_tag", "cpu_seconds_per_epoch")
    cells = [c.strip() for c in dnn_line.strip("|").split("|")]
    assert cells[1:] == ["8.0", f"{paper:g}"]  # (30 / 5 + 50 / 5) / 2 = 8 s per epoch
