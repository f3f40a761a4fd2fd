"""AIM Tables 6-9 and Figures 7-8: the inference timing a run records, the complexity columns (params, minutes per
epoch, per stage, inference seconds) from hand-made run folders, Table 6 and Figures 7-8 from hand-made artifacts on
a small ``functions`` stand-in (checked against direct computations), and (slow) Figure 7 end to end."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from scipy.stats import spearmanr

from ctrlab.data import cache
from ctrlab.data.cache import SplitArrays
from ctrlab.data.synthetic import auc
from ctrlab.lit.timing import forward_seconds, inference_batches
from ctrlab.report.collect import collect
from ctrlab.report.paper import get_table
from ctrlab.reproduce import CONFIGS, experiment_spec, write_report
from ctrlab.run_config import ConfigError, validate_run_config
from ctrlab.search.artifact import SCHEMA_VERSION, Artifact, Provenance, SpaceRecord, write_artifact
from ctrlab.train import train
from tests.helpers import ROOT, run_module, synthetic_source
from tests.test_train import FAST, make_cfg

FUNCTIONS = ["inner", "outer", "vector_kernel", "scalar_kernel"]

# --- the inference timing of a run ------------------------------------------------------------------------------


class _Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        return batch["ids"].float().sum(dim=1) * self.w


def test_inference_timing_scores_the_requested_rows_in_batches():
    ids = np.arange(21, dtype=np.int32).reshape(7, 3)
    arrays = SplitArrays(ids=ids, labels=np.zeros(7, dtype=np.float32))
    batches = inference_batches(arrays, samples=10, batch_size=4, device=torch.device("cpu"))
    assert [len(b["label"]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b["ids"] for b in batches]), torch.as_tensor(ids[np.arange(10) % 7]).long())
    model = _Counting().train()
    ticks = itertools.count()  # a clock that advances one second per reading: each pass reads it twice
    assert forward_seconds(model, batches, repeats=3, clock=lambda: float(next(ticks))) == 1.0
    assert model.calls == 1 + 3 * len(batches)  # one warm-up batch, then every batch per repeat
    assert model.training  # the mode it was in is restored


def test_a_run_with_inference_timing_records_its_inference_seconds(tmp_path):
    timing = "+inference_timing={samples: 5000, batch_size: 2000}"  # the 600 test rows, cycled
    metrics = train(make_cfg(tmp_path, [*FAST, "trainer.max_epochs=1", timing]))
    assert metrics["status"] == "completed" and metrics["inference_s"] > 0
    assert "inference_s" not in train(make_cfg(tmp_path / "untimed", [*FAST, "trainer.max_epochs=1"]))


def test_a_bad_inference_timing_stops_the_run_at_its_start_naming_the_key():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=aim/table8", "inference_timing.samples=0",
                                          "paths.output_dir=X"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"inference_timing\.samples"):
        validate_run_config(cfg)


# --- Tables 7-9 from hand-made run folders ----------------------------------------------------------------------


def _job(folder: Path, metrics: dict, stages: dict[str, tuple[float, int]] | None = None) -> Path:
    """A completed job: metrics.json, environment.json, config_resolved.yaml; ``stages``: name -> (train_time_s,
    epochs) of a chain's stage folders."""
    folder.mkdir(parents=True)
    if stages:
        metrics["stages"] = []
        for name, (seconds, epochs) in stages.items():
            (folder / "stages" / name).mkdir(parents=True)
            (folder / "stages" / name / "metrics.json").write_text(json.dumps({"train_time_s": seconds,
                                                                              "epochs": epochs}))  # fmt: skip
            metrics["stages"].append({"name": name, "folder": str(folder / "stages" / name)})
    base = {"status": "completed", "seed": 1, "data": "synthetic_avazu", "paper_dataset": "avazu",
            "data_description": "stand-in", "max_epochs": 2, "test/auc": 0.7, "test/logloss": 0.4}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(base | metrics))
    (folder / "environment.json").write_text(json.dumps({"processor": "Test CPU 9000", "torch_threads": 2,
                                                         "cuda": None}))  # fmt: skip
    (folder / "config_resolved.yaml").write_text(
        yaml.safe_dump({"inference_timing": {"samples": 200000, "batch_size": 2000}})
    )
    return folder


def _cells(md: str, name: str) -> list[str]:
    row = next(line for line in md.splitlines() if line.startswith(f"| {name} "))
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_complexity_tables_read_params_minutes_per_epoch_per_stage_and_inference_seconds(tmp_path):
    fm = _job(tmp_path / "fm", {"model": "fm", "params": 5_000_000, "train_time_s": 240.0, "epochs": 2,
                                "inference_s": 0.25})  # fmt: skip
    aim3 = _job(tmp_path / "aim3", {"model": "aim", "paper_row": "aim_order3", "params": 20_000_000,
                                    "train_time_s": 90.0, "epochs": 3, "inference_s": 1.5},
                stages={"interaction": (60.0, 1), "interaction3": (240.0, 2), "embed": (360.0, 3),
                        "retrain": (90.0, 3)})  # fmt: skip
    runs = collect([fm, aim3]).runs.sort("model")
    # minutes per epoch, the slow way: seconds / epochs / 60; a chain's interaction searches add up
    assert runs["train_min"].to_list() == [pytest.approx(0.5), pytest.approx(2.0)]
    aim = runs.filter(pl.col("model") == "aim_order3").row(0, named=True)
    assert aim["stage_min/search_interaction_if"] == pytest.approx(60 / 1 / 60 + 240 / 2 / 60)  # 1 + 2
    assert aim["stage_min/search_embed"] == pytest.approx(2.0)
    assert aim["stage_min/retrain"] == pytest.approx(0.5)
    assert runs.filter(pl.col("model") == "fm")["stage_min/retrain"].to_list() == [None]  # no chain

    md7 = write_report(experiment_spec("aim/table7"), [fm], "smoke", tmp_path / "t7").read_text()
    cells = _cells(md7, "FM")  # params (in the paper's unit of 10^7), train (min), inference (s): ours, paper, Δ
    assert cells[1:3] == ["0.5000 (n=1)", "2.6000"] and cells[4:6] == ["2.0000 (n=1)", "3.3000"]
    assert cells[7:9] == ["0.2500 (n=1)", "0.5300"]
    assert "Test CPU 9000, 2 torch threads, CPU only" in md7 and "NVIDIA 1080Ti" in md7
    assert "200,000 test rows" in md7 and "batches of 2,000" in md7
    md9 = write_report(experiment_spec("aim/table9"), [aim3], "smoke", tmp_path / "t9").read_text()
    assert "summed over a chain's stages of that kind" in md9 and "inference =" not in md9  # no inference column
    cells = _cells(md9, "AIM(3rd)")  # search interaction-IF, search embed, re-train: ours, paper, Δ
    assert cells[1:3] == ["3.0000 (n=1)", "20.5000"] and cells[4:6] == ["2.0000 (n=1)", "17.1000"]
    assert cells[7:9] == ["0.5000 (n=1)", "14.8000"]
    assert "*not run*" in md9  # AIM(2nd) and AIM(4th) have no runs here


# --- Table 6 and Figures 7-8 from hand-made artifacts ------------------------------------------------------------


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """A small ``functions`` stand-in, built once: (cache folder, feature map, splits)."""
    root = tmp_path_factory.mktemp("aimfig")
    source = synthetic_source(name="aim_fig", num_rows=3000, num_fields=5, min_vocab=4, max_vocab=30, num_pairs=3,
                              num_triples=0, mechanism="functions", min_count=2)  # fmt: skip
    folder = cache.prepare(source, root)
    fm, splits = cache.load(folder)
    return folder, fm, splits


def _artifact_job(root: Path, folder: Path, fm, *spaces: SpaceRecord, seed: int = 1) -> Path:
    """A job whose searched architecture is an artifact of ``spaces`` on the cache at ``folder``."""
    path = write_artifact(root / "search" / "architecture.json", Artifact(
        schema_version=SCHEMA_VERSION, spaces=list(spaces),
        provenance=Provenance(kind="search", model={"config": "aim"}, seed=seed,
                              data={"cache": folder.name, "dataset": fm.dataset, "fields": [f.name for f in fm.fields]},
                              config={"paths": {"cache_dir": str(folder.parents[1])},
                                      "data": {"source": {"name": fm.dataset}}})))  # fmt: skip
    return _job(root / "job", {"model": "aim", "paper_row": "aim", "searched_architecture": {"path": str(path)}})


def _pairs(fm) -> list[str]:
    names = [f.name for f in fm.fields]
    return [f"{a}×{b}" for a, b in itertools.combinations(names, 2)]


def test_table6_gives_vocabulary_and_kept_size_per_field_with_their_rank_correlation(tmp_path, standin):
    folder, fm, _ = standin
    dims = [["0"], ["0", "1", "2"], [], ["1", "3"], ["0", "1", "2", "3"]]
    job = _artifact_job(tmp_path, folder, fm,
                        SpaceRecord(name="interaction_function", units=_pairs(fm), options=FUNCTIONS, subset=True,
                                    decisions=[["inner"]] * 10),
                        SpaceRecord(name="embedding_dim", units=[f.name for f in fm.fields],
                                    options=["0", "1", "2", "3"], subset=True, decisions=dims))  # fmt: skip
    md = write_report(experiment_spec("aim/table6"), [job], "smoke", tmp_path / "out")
    assert md == tmp_path / "out" / "table6.smoke.md"
    rows = pl.read_csv(md.with_suffix(".csv"))
    vocab = [f.vocab_size - 2 for f in fm.fields]  # without the padding and OOV ids
    planted = fm.extra["planted"]
    assert rows["vocabulary"].to_list() == vocab
    assert rows["kept"].to_list() == [1, 3, 0, 2, 4]
    assert rows["planted_dim"].to_list() == planted["field_dims"]
    in_pairs = {f for p in planted["pairs"] for f in p}
    assert rows["in_planted_pair"].to_list() == [f in in_pairs for f in range(5)]
    text = md.read_text()
    rho = spearmanr(vocab, [1, 3, 0, 2, 4]).statistic
    assert f"per search: {rho:+.2f}." in text
    paper = get_table("aim", "table6").rows
    paper_rho = spearmanr([r["vocabulary"] for r in paper], [r["embedding"] for r in paper]).statistic
    assert f"the paper gives none): {paper_rho:+.2f}" in text
    assert len(re.findall(r"^\| f\d \|", text, flags=re.M)) == 5  # one row per field, sorted by vocabulary


def _statistics_auc_slow(splits, a: int, b: int) -> float:
    """The train CTR of each (x_a, x_b) value pair, scored on test; unseen pairs get the train CTR."""
    train, test = splits["train"], splits["test"]
    clicks: dict[tuple[int, int], list[float]] = {}
    for row, y in zip(np.asarray(train.ids), np.asarray(train.labels), strict=True):
        clicks.setdefault((row[a], row[b]), []).append(float(y))
    prior = float(np.mean(train.labels))
    score = [np.mean(clicks[(r[a], r[b])]) if (r[a], r[b]) in clicks else prior for r in np.asarray(test.ids)]
    return auc(np.array(score), np.asarray(test.labels))


def test_figure7_sets_each_slots_alpha_beside_its_pairs_statistics_auc(tmp_path, standin):
    folder, fm, splits = standin
    units = _pairs(fm)
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(10, 4)).round(3) * (rng.random((10, 4)) < 0.5)  # [U, K], zeros = dropped
    decisions = [[f for f, w in zip(FUNCTIONS, row, strict=True) if w != 0] for row in weights]
    job = _artifact_job(tmp_path, folder, fm,
                        SpaceRecord(name="interaction_function", units=units, options=FUNCTIONS, subset=True,
                                    decisions=decisions, weights=weights.tolist()))  # fmt: skip
    md = write_report(experiment_spec("aim/figure7"), [job], "smoke", tmp_path / "out")
    assert md.name == "figure7.smoke.md" and (tmp_path / "out" / "figure7.smoke.png").stat().st_size > 1000
    points = pl.read_csv(md.with_suffix(".csv"))
    assert points.height == 10 * 4
    assert points["alpha"].to_list() == pytest.approx(weights.ravel().tolist())
    assert points["kept"].to_list() == (weights.ravel() != 0).tolist()
    for unit, (a, b) in zip(units, itertools.combinations(range(5), 2), strict=True):
        got = points.filter(pl.col("pair") == unit)["statistics_auc"].unique().to_list()
        assert got == [pytest.approx(_statistics_auc_slow(splits, a, b))]
    names = [f.name for f in fm.fields]
    planted = {
        f"{names[a]}×{names[b]}": fn
        for (a, b), fn in zip(fm.extra["planted"]["pairs"], fm.extra["planted"]["functions"], strict=True)
    }
    assert dict(points.select("pair", "planted").drop_nulls().unique().iter_rows()) == planted
    text = md.read_text()
    assert "Fig. 7" in text and "the figure prints none; these are ours only" in text
    kept_pairs = sum(any(row) for row in decisions)
    assert f"{kept_pairs} of 10 pairs kept" in text


def test_figure8_counts_the_kept_functions_per_order_and_per_pair(tmp_path, standin):
    folder, fm, splits = standin
    pairs = _pairs(fm)
    names = [f.name for f in fm.fields]
    triples = [f"{names[0]}×{names[1]}×{names[2]}", f"{names[1]}×{names[3]}×{names[4]}"]
    decisions = ([["inner", "vector_kernel"], ["vector_kernel"], [], ["outer", "inner", "scalar_kernel"]]
                 + [["vector_kernel"]] * 6 + [["inner"], ["inner", "outer"]])  # fmt: skip
    job = _artifact_job(tmp_path, folder, fm,
                        SpaceRecord(name="interaction_function", units=pairs + triples, options=FUNCTIONS, subset=True,
                                    decisions=decisions))  # fmt: skip
    md = write_report(experiment_spec("aim/figure8"), [job], "smoke", tmp_path / "out")
    freq = pl.read_csv(md.with_suffix(".csv"))
    counts = {(o, f): k for o, f, k, _ in freq.iter_rows()}
    # by hand: order 2 keeps inner 2, outer 1, vector_kernel 8, scalar_kernel 1; order 3 inner 2, outer 1
    assert counts == {(2, "inner"): 2, (2, "outer"): 1, (2, "vector_kernel"): 8, (2, "scalar_kernel"): 1,
                      (3, "inner"): 2, (3, "outer"): 1, (3, "vector_kernel"): 0, (3, "scalar_kernel"): 0}  # fmt: skip
    assert freq.filter(pl.col("order") == 3)["share"].to_list()[:2] == [pytest.approx(2 / 3), pytest.approx(1 / 3)]
    per_pair = pl.read_csv(tmp_path / "out" / "figure8.smoke_statistics_auc.csv")
    assert per_pair["functions_kept"].to_list() == [2, 1, 0, 3] + [1] * 6  # the 2nd-order pairs only
    assert per_pair["statistics_auc"][0] == pytest.approx(_statistics_auc_slow(splits, 0, 1))
    assert math.isclose(per_pair.filter(pl.col("functions_kept") == 1)["statistics_auc"].mean(),
                        np.mean([_statistics_auc_slow(splits, a, b) for a, b in
                                 list(itertools.combinations(range(5), 2))[4:] + [(0, 2)]]))  # fmt: skip


# --- one reproduction end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_figure7_reproduction_runs_the_order2_search_and_draws_it(tmp_path):
    args = ["aim/figure7", "--scale", "smoke", "--data", "synthetic_avazu", "data.num_rows=3000",
            "model.embedding_dim=4", "logger=none"]  # fmt: skip
    env = {"CTRLAB_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT / "src"), "WANDB_MODE": "disabled"}
    done = run_module("ctrlab.reproduce", *args, env=env, timeout=900)
    assert "written:" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "aim"
    assert (out / "figure7.smoke.png").stat().st_size > 1000
    points = pl.read_csv(out / "figure7.smoke.csv")
    assert points.height == math.comb(24, 2) * 4  # every pair of the Avazu stand-in's 24 fields x 4 functions
    assert points["statistics_auc"].is_between(0, 1).all()
