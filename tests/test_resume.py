"""Runs you can trust (issue 10): a run killed with SIGKILL and resumed from ``last.ckpt`` ends bit-identical to
the run never stopped (same folder or a new one, CSV log continued); a run never writes into another run's folder.
Each test drives the real entry point in subprocesses."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, run_module

# 329 steps an epoch (42000 train rows / 128), dropout on (so the random generators matter), no early stop
RUN = ["data=synthetic_ipinyou", "data.num_rows=60000", "data.batch_size=128", "model=deepfm", "model.mlp_hidden=[32]",
       "model.mlp_dropout=0.2", "trainer.max_epochs=3", "trainer.enable_progress_bar=false", "logger=csv",
       "callbacks.early_stopping.patience=10"]  # fmt: skip
RESULTS = ("val/auc", "val/logloss", "test/auc", "test/logloss", "global_step", "epochs", "best_epoch")


def _cmd(folder: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ctrlab.train", *RUN, f"hydra.run.dir={folder}", f"paths.cache_dir={cache}", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(folder: Path, cache: Path, *extra: str, base: list[str] = RUN) -> subprocess.CompletedProcess:
    args = [*base, f"hydra.run.dir={folder}", f"paths.cache_dir={cache}", *extra]
    return run_module("ctrlab.train", *args, env={"OMP_NUM_THREADS": "1"})


def _results(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    return {k: metrics[k] for k in RESULTS}


def _kill_after_first_checkpoint(folder: Path, cache: Path, *extra: str) -> int:
    """Start a run, SIGKILL it at a random moment after its first ``last.ckpt``; return the checkpoint's step."""
    log = (folder.parent / f"{folder.name}.log").open("w")
    proc = subprocess.Popen(_cmd(folder, cache, *extra), cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    last = folder / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists():
        assert proc.poll() is None, f"the run ended before its first checkpoint; see {log.name}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(random.Random().uniform(0.0, 0.05))  # a random step after the checkpoint (written atomically)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (folder / "metrics.json").exists()
    return torch.load(last, map_location="cpu", weights_only=False)["global_step"]


@pytest.mark.parametrize(
    "interval",
    [
        pytest.param("0.5", id="mid-epoch-checkpoint"),
        pytest.param("1.0", id="epoch-end-checkpoint", marks=pytest.mark.slow),
    ],
)
def test_resume_after_sigkill_is_bit_identical_to_never_stopping(tmp_path, interval):
    cache = tmp_path / "cache"
    extra = [f"trainer.val_check_interval={interval}"]
    assert _run(tmp_path / "whole", cache, *extra).returncode == 0
    whole = _results(tmp_path / "whole")

    killed = tmp_path / "killed"
    step = _kill_after_first_checkpoint(killed, cache, *extra)
    steps_per_epoch = 329
    assert (step % steps_per_epoch != 0) == (interval == "0.5"), step

    # into a new folder: the best checkpoint comes along, the killed run's folder is left as it was
    before = {p.name: p.stat().st_mtime_ns for p in (killed / "checkpoints").iterdir()}
    new = _run(tmp_path / "new", cache, *extra, f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}")
    assert new.returncode == 0, new.stderr[-3000:]
    assert _results(tmp_path / "new") == whole
    assert {p.name: p.stat().st_mtime_ns for p in (killed / "checkpoints").iterdir()} == before
    assert Path(json.loads((tmp_path / "new" / "metrics.json").read_text())["best_checkpoint"]).parent == (
        tmp_path / "new" / "checkpoints"
    )
    # the CSV log reads as one uninterrupted run's
    csv_whole = (tmp_path / "whole" / "csv" / "metrics.csv").read_text()
    assert (tmp_path / "new" / "csv" / "metrics.csv").read_text() == csv_whole

    # into the killed run's own folder
    same = _run(killed, cache, *extra, f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}")
    assert same.returncode == 0, same.stderr[-3000:]
    assert _results(killed) == whole
    assert (killed / "csv" / "metrics.csv").read_text() == csv_whole
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


FAST = ["debug=smoke", "data.num_rows=3000", "model.mlp_hidden=[16]", "trainer.max_epochs=1", "logger=csv"]


def test_a_run_refuses_a_folder_that_holds_another_runs_results(tmp_path):
    folder, cache = tmp_path / "run", tmp_path / "cache"
    first = _run(folder, cache, base=FAST)
    assert first.returncode == 0, first.stderr[-3000:]
    kept = {p: p.read_bytes() for p in [folder / "metrics.json", folder / "checkpoints" / "last.ckpt"]}
    second = _run(folder, cache, "seed=7", base=FAST)
    assert second.returncode != 0
    said = second.stdout + second.stderr
    assert str(folder) in said and "already holds another run's results" in said
    assert f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}" in said  # how to resume it instead
    assert {p: p.read_bytes() for p in kept} == kept, "the first run's results were changed"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
