"""ctrlab.reproduce end to end: stable reproduction folders that resume, and partial sweeps kept out of results/."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, run_module

# two jobs (LR and FM, one seed) on a 3,000-row stand-in: a few seconds of training
FAST = [
    "dynint/table1",
    "--scale",
    "smoke",
    "--models",
    "lr,fm",
    "--data",
    "synthetic_ipinyou",
    "data.num_rows=3000",
    "logger=none",
]


def _reproduce(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"CTRLAB_ROOT": str(root), "PYTHONPATH": str(ROOT / "src"), "WANDB_MODE": "disabled"}
    return run_module("ctrlab.reproduce", *args, env=env, timeout=600)


def _jobs(root: Path) -> list[Path]:
    [sweep] = (root / "logs" / "dynint_table1" / "smoke").glob("*/all")
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


@pytest.mark.slow
def test_a_rerun_skips_completed_jobs_and_resumes_the_cut_one(tmp_path):
    first = _reproduce(tmp_path, *FAST)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    table = tmp_path / "results" / "dynint" / "table1.smoke.csv"
    fresh = table.read_text()
    done, cut = _jobs(tmp_path)
    (cut / "metrics.json").unlink()  # as if the process died after the last checkpoint
    stamp = (done / "metrics.json").stat().st_mtime_ns

    second = _reproduce(tmp_path, *FAST)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "1 of 2 jobs done with the same config, skipping them; resuming job 1 from last.ckpt" in second.stdout
    assert (done / "metrics.json").stat().st_mtime_ns == stamp  # not run again
    assert yaml.safe_load((cut / "config_resolved.yaml").read_text())["ckpt_path"].endswith("last.ckpt")
    assert table.read_text() == fresh

    # a changed config never reuses a job: the stale one runs again from scratch
    saved = yaml.safe_load((done / "config_resolved.yaml").read_text())
    saved["model"]["embedding_dim"] = 99
    (done / "config_resolved.yaml").write_text(yaml.safe_dump(saved))
    third = _reproduce(tmp_path, *FAST)
    assert "1 of 2 jobs done with the same config, skipping them; running 1 (1 config changed)" in third.stdout
    assert (done / "metrics.json").stat().st_mtime_ns != stamp and table.read_text() == fresh

    assert "deleting" in _reproduce(tmp_path, *FAST, "--fresh").stdout and table.read_text() == fresh


@pytest.mark.slow
def test_a_failed_job_keeps_the_table_out_of_results_and_fails_the_command(tmp_path):
    # LR takes no embedding_dim: its job fails when the model is built, FM's runs
    run = _reproduce(tmp_path, *FAST, "++model.embedding_dim=4")
    assert run.returncode != 0
    assert not (tmp_path / "results").exists()
    [md] = (tmp_path / "logs" / "dynint_table1" / "smoke").glob("*/table1.smoke.md")
    text = md.read_text()
    assert "**Partial**: 1 of 2 jobs did not complete" in text and "1 completed, 1 failed" in text
    assert "partial: 1 of 2 jobs failed and 0 are missing" in run.stdout
