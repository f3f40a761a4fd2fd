"""ctrlab.report.figures: a metric against a swept value, and validation curves, from fake runs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from ctrlab.report.figures import write_figure

SPEC = {
    "paper": "dynint",
    "label": "Figure X",
    "caption": "a caption",
    "x_label": "K",
    "claim": "it rises",
    "series_label": "λ",
}


def _job(job: Path, config: str, row: str, seed: int, auc: float) -> None:
    job.mkdir(parents=True)
    (job / "metrics.json").write_text(
        json.dumps(
            {
                "model": config,
                "paper_row": row,
                "data": "synthetic_criteo",
                "paper_dataset": "criteo",
                "data_description": "synthetic 39-field stand-in",
                "seed": seed,
                "status": "completed",
                "epochs": 1,
                "test/auc": auc,
                "test/logloss": 1 - auc,
                "val/auc": auc,
                "val/logloss": 1 - auc,
            }
        )
    )


def test_figure_points_are_means_over_runs_at_each_x(tmp_path):
    runs = tmp_path / "multirun"
    aucs = {("16", 1): 0.70, ("16", 2): 0.72, ("64", 1): 0.75, ("64", 2): 0.77, ("32", 1): 0.74}
    for num, ((k, seed), auc) in enumerate(aucs.items()):
        _job(runs / str(num), "dynint_dgp", k, seed, auc)
    md = write_figure({**SPEC, "key": "fig", "kind": "figure", "log2_x": True}, [runs], tmp_path / "out", "smoke")
    assert md == tmp_path / "out" / "fig.smoke.md"  # the scale in the name: one scale never overwrites another
    points = pl.read_csv(tmp_path / "out" / "fig.smoke.csv")
    assert points["x"].to_list() == [16.0, 32.0, 64.0]
    assert points["auc_mean"].to_list() == pytest.approx([0.71, 0.74, 0.76])
    assert points["n"].to_list() == [2, 1, 2]
    assert (tmp_path / "out" / "fig.smoke.png").stat().st_size > 1000
    text = md.read_text()
    assert "it rises" in text and "fig.smoke.png" in text and "5 completed" in text


def test_curves_average_validation_logs_per_series(tmp_path):
    runs = tmp_path / "multirun"
    for num, (lam, seed, shift) in enumerate([("0.0", 1, 0.0), ("0.0", 2, 0.02), ("0.01", 1, 0.05)]):
        _job(runs / str(num), "dynint_dwp", lam, seed, 0.7)
        (runs / str(num) / "csv").mkdir()
        (runs / str(num) / "csv" / "metrics.csv").write_text(
            "epoch,step,train/loss,val/auc,val/logloss\n"
            f"0,9,0.6,,\n0,10,,{0.6 + shift},0.5\n0,20,,{0.7 + shift},0.4\n0,20,,0.99,0.1\n"
        )  # last: best ckpt
    write_figure({**SPEC, "key": "curve", "kind": "curve"}, [runs], tmp_path / "out", "smoke")
    curves = pl.read_csv(tmp_path / "out" / "curve.smoke.csv")
    zero = curves.filter(pl.col("series") == 0.0)
    assert zero["step"].to_list() == [10, 20] and zero["auc"].to_list() == pytest.approx([0.61, 0.71])
    assert curves.filter(pl.col("series") == 0.01)["auc"].to_list() == pytest.approx([0.65, 0.75])
    assert (tmp_path / "out" / "curve.smoke.png").exists()
