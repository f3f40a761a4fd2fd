"""A run that reports itself, as a user runs it (``python -m ctrlab.train``): one W&B run per job, a quiet
console with one progress line per job, one-line failures with exit status 1, the CSV log's stage column."""

from __future__ import annotations

import csv
import json
import re
import socket
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ctrlab.console import sweep_values
from tests.helpers import run_module

SMOKE = ["debug=smoke", "data.num_rows=3000"]


def _train(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    # WANDB_SILENT is left to ctrlab: its silencing of W&B's banner is under test
    unset = {"WANDB_SILENT": None, "CRITEO": None}
    base = {"CTRLAB_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    return run_module("ctrlab.train", *args, env={**unset, **base, **env})


def _wandb_records(run_dir: Path) -> list:
    """The records of an offline W&B run, read from its ``run-<id>.wandb`` file: W&B's header (":W&B", magic,
    version: 7 bytes), then LevelDB-log blocks of 32 KiB, each record a 7-byte header (CRC, length, type) and a
    ``Record`` protobuf, split over blocks as FIRST/MIDDLE/LAST pieces."""
    from wandb.proto.wandb_internal_pb2 import Record

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, payload, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        payload += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: the record is complete
            record = Record()
            record.ParseFromString(payload)
            records.append(record)
            payload = b""
    return records


def _items(records: list, kind: str) -> dict:
    """The key -> value updates of all ``config`` or ``summary`` records (and the run record's config)."""
    items = {}
    for r in records:
        if r.WhichOneof("record_type") == "run" and kind == "config":
            items.update({u.key: json.loads(u.value_json) for u in r.run.config.update})
        if r.WhichOneof("record_type") == kind:
            for u in getattr(r, kind).update:
                items[u.key or "/".join(u.nested_key)] = json.loads(u.value_json)
    return items


@pytest.fixture(scope="module")
def wandb_multirun(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """``-m model=fm,deepfm logger=wandb``, W&B offline: two jobs in one process."""
    tmp = tmp_path_factory.mktemp("multirun")
    out = _train(tmp, "-m", "model=fm,deepfm", *SMOKE, "logger=wandb", f"hydra.sweep.dir={tmp}/sweep")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out, tmp / "sweep"


def test_each_multirun_job_is_its_own_wandb_run_with_config_group_tags_and_summary(wandb_multirun):
    _, sweep = wandb_multirun
    ids = set()
    for job, model in (("0", "FM"), ("1", "DeepFM")):
        (run_dir,) = (sweep / job / "wandb").glob("offline-run-*")
        records = _wandb_records(run_dir)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        ids.add(run.run_id)
        assert run.run_group == sweep.name and list(run.tags) == ["dev"]
        config = _items(records, "config")
        assert config["model"]["_target_"].endswith(f".{model}") and config["seed"] == 2022
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        summary = _items(records, "summary")
        assert summary["status"] == "completed" and summary["test/auc"] == pytest.approx(metrics["test/auc"])
        (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
        assert exit_record.exit_code == 0  # finished by ctrlab, not left to the next job
    assert len(ids) == 2


PROGRESS = re.compile(
    r"^\[([12])/2\] (fm|deepfm) · synthetic_criteo · seed 2022 -> val AUC 0\.\d{4}, "
    r"test AUC 0\.\d{4} · [\d.]+ s(?: · ETA [\d.]+ (?:s|min))?$"
)
# what may print besides the progress lines: Hydra's and ctrlab's own log lines, and the sweep's summary
OWN_LINE = re.compile(r"^\[[\d\-: ,]+\]\[(HYDRA|ctrlab\.[\w.]+)\]|^2 jobs in [\d.]+ s, 0 failed · ")


def test_multirun_prints_one_progress_line_per_job_and_no_third_party_noise(wandb_multirun):
    out, _ = wandb_multirun
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    progress = [m.groups() for m in map(PROGRESS.match, lines) if m]
    assert progress == [("1", "fm"), ("2", "deepfm")], out.stdout
    assert [line for line in lines if not PROGRESS.match(line) and not OWN_LINE.match(line)] == []
    # one line per validation while training (ctrlab.lit.callbacks.ValidationLog), even with output in a file
    assert (
        len(re.findall(r"epoch 0 · step \d+ · val AUC 0\.\d{4} · val log loss \d\.\d{4} · \d+ samples/s", out.stdout))
        == 2
    )


def test_csv_log_labels_the_best_checkpoint_rows_apart_from_the_epochs(wandb_multirun):
    _, sweep = wandb_multirun
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    with (sweep / "0" / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    fit = [r for r in rows if r["stage"] == "fit" and r["val/auc"]]
    assert len(fit) == metrics["epochs"] == 1
    best = [r for r in rows if r["stage"] == "best_checkpoint"]
    assert len(best) == 2 and len(rows) == len(fit) + len(best)
    assert float(next(r["val/auc"] for r in best if r["val/auc"])) == pytest.approx(metrics["val/auc"])
    assert float(next(r["test/auc"] for r in best if r["test/auc"])) == pytest.approx(metrics["test/auc"])


def test_config_tree_is_saved_beside_the_resolved_config(wandb_multirun):
    out, sweep = wandb_multirun
    tree = (sweep / "1" / "config_tree.txt").read_text()
    assert "├── model: deepfm" in tree and "_target_: ctrlab.models.deepfm.DeepFM" in tree
    assert "\x1b[" not in tree  # plain text, no colour codes
    assert "├── model" not in out.stdout  # a multirun does not print one tree per job


def test_a_failing_run_prints_one_line_keeps_the_traceback_in_its_log_and_exits_1(tmp_path):
    missing = tmp_path / "no_such_train.txt"
    out = _train(tmp_path, "data=criteo", f"data.source.path={missing}", f"hydra.run.dir={tmp_path}/run")
    assert out.returncode == 1
    console = out.stdout + out.stderr
    assert "Traceback" not in console
    errors = [line for line in console.splitlines() if "FileNotFoundError" in line]
    assert len(errors) == 1 and "[ctrlab.train][ERROR] - FileNotFoundError: data.source.path" in errors[0]
    assert "├── model: deepfm" in out.stdout  # a single run prints its config tree first
    run = tmp_path / "run"
    assert "Traceback" in (run / "train.log").read_text() and (run / "config_tree.txt").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"].startswith("FileNotFoundError: data.source.path")


def test_a_multirun_with_a_failed_job_runs_every_job_then_exits_1(tmp_path):
    out = _train(tmp_path, "-m", "data=criteo,synthetic_criteo", *SMOKE, f"hydra.sweep.dir={tmp_path}/sweep")
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert re.search(
        r"^\[1/2\] deepfm · criteo · seed 2022 -> FAILED: ConfigError: config key\(s\) "
        r"`data.source.path` required but not set",
        out.stdout,
        re.M,
    )
    assert re.search(r"^\[2/2\] deepfm · synthetic_criteo · seed 2022 -> val AUC", out.stdout, re.M)
    assert "2 jobs in" in out.stdout and "1 failed" in out.stdout
    failed = json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "data.source.path" in failed["error"]
    assert "Traceback" in (tmp_path / "sweep" / "0" / "train.log").read_text()
    assert json.loads((tmp_path / "sweep" / "1" / "metrics.json").read_text())["status"] == "completed"


def test_sweep_size_counts_every_value_combination_with_the_command_line_winning():
    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"params": {"data": "a,b,c", "seed": "1,2"}},
                "overrides": {"task": ["model=fm,deepfm", "seed=1,2,3", "debug=smoke"]},
            }
        }
    )
    assert sweep_values(config) == {"data": 3, "seed": 3, "model": 2, "debug": 1}  # 18 jobs
    config.hydra.overrides.task = ["lr=interval(0.1,1.0)"]
    assert sweep_values(config)["lr"] is None  # no list of values: the total is unknown


@pytest.mark.slow
def test_unreachable_wandb_server_falls_back_to_offline_once_per_sweep(tmp_path):
    """A server that accepts connections and never answers: each W&B init would wait out its timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        env = {"WANDB_BASE_URL": url, "WANDB_API_KEY": "x" * 40, "WANDB_MODE": "online"}
        out = _train(
            tmp_path,
            "-m",
            "model=fm,deepfm",
            *SMOKE,
            "logger=wandb",
            "logger.wandb.offline=false",
            "logger.wandb.init_timeout=2",
            f"hydra.sweep.dir={tmp_path}/sweep",
            **env,
        )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("W&B could not log online") == 1
    for job in ("0", "1"):
        assert list((tmp_path / "sweep" / job / "wandb").glob("offline-run-*"))
