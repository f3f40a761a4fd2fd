"""Trustworthy caches: checksums verified on open, leftovers of killed builds, unwritable folders, one log line."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctrlab.data import cache
from ctrlab.data.crosses import CrossSpec, prepare_crosses
from ctrlab.data.datamodule import CTRDataModule
from tests.helpers import ROOT, run_module, synthetic_source


def small(**kw):
    return synthetic_source(num_rows=2000, num_fields=6, max_vocab=40, **kw)


def rebuilt_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "rebuilt" in r.getMessage()]


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)


@pytest.fixture
def read_only():
    """chmod folders to r-x for the test; skip where that does not restrict us (root with CAP_DAC_OVERRIDE)."""
    done = []

    def make(*folders: Path) -> None:
        for folder in folders:
            folder.chmod(0o555)
            done.append(folder)
        if os.access(folders[0], os.W_OK):
            pytest.skip("chmod does not restrict this process (running as root?)")

    yield make
    for folder in done:  # let pytest delete tmp_path
        folder.chmod(0o755)


@pytest.mark.parametrize("verify", ["cheap", "full"])
def test_labels_overwritten_with_ones_are_detected_and_rebuilt(tmp_path, caplog, verify):
    src = small()
    folder = cache.prepare(src, tmp_path)
    labels = np.load(folder / "train_labels.npy")
    size = (folder / "train_labels.npy").stat().st_size
    np.save(folder / "train_labels.npy", np.ones_like(labels))  # same shape, dtype and size
    assert (folder / "train_labels.npy").stat().st_size == size
    with caplog.at_level(logging.INFO, logger="ctrlab.data.cache"):
        assert cache.prepare(src, tmp_path, verify) == folder
    assert any("train_labels.npy is damaged" in w for w in rebuilt_warnings(caplog))
    np.testing.assert_array_equal(np.load(folder / "train_labels.npy"), labels)


@pytest.mark.parametrize("verify", ["cheap", "full"])
def test_a_few_overwritten_bytes_in_ids_are_detected_and_rebuilt(tmp_path, caplog, verify):
    src = small()
    folder = cache.prepare(src, tmp_path)
    ids = np.load(folder / "train_ids.npy")
    overwrite(folder / "train_ids.npy", 1000, b"\xff\xff\x7f")  # an id of ~2^31: an IndexError in the embedding
    with caplog.at_level(logging.INFO, logger="ctrlab.data.cache"):
        cache.prepare(src, tmp_path, verify)
    assert any("train_ids.npy is damaged" in w for w in rebuilt_warnings(caplog))
    np.testing.assert_array_equal(np.load(folder / "train_ids.npy"), ids)


def test_cheap_check_misses_only_damage_outside_its_blocks_with_the_builds_mtime(tmp_path, monkeypatch):
    """The documented limit of ``cheap``: same-size damage outside the sampled blocks, with the mtime put
    back to the build's, passes it; ``full`` catches it. Small blocks make the file larger than the sample."""
    monkeypatch.setattr(cache, "_BLOCK", 256)
    monkeypatch.setattr(cache, "_SAMPLED_BLOCKS", 4)
    src = small()
    folder = cache.prepare(src, tmp_path)
    path = folder / "train_ids.npy"
    size, st = path.stat().st_size, path.stat()
    blocks = np.linspace(0, size - 256, 4).astype(int)
    offset = 1000
    assert size > 4 * 256 and not any(b <= offset < b + 256 for b in blocks)
    overwrite(path, offset, b"\xff\xff\x7f")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.is_valid(folder, src.cache_key(), "cheap")
    assert not cache.is_valid(folder, src.cache_key(), "full")
    overwrite(path, 0, b"\x00")  # in the first block (the header): the cheap check sees it too
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not cache.is_valid(folder, src.cache_key(), "cheap")


def test_intact_cache_is_reused_and_a_copy_with_new_mtimes_verified_once_in_full(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(cache, "_BLOCK", 256)  # train_ids.npy (34 kB) larger than the sample: read whole only
    monkeypatch.setattr(cache, "_SAMPLED_BLOCKS", 4)  # when its mtime changed
    src = small()
    with caplog.at_level(logging.INFO, logger="ctrlab.data.cache"):
        folder = cache.prepare(src, tmp_path)
        built = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("test_synthetic cache built in ") and m.endswith(f" s: {folder}") for m in built)
        caplog.clear()
        before = (folder / "train_ids.npy").stat().st_mtime_ns
        assert cache.prepare(src, tmp_path) == folder
        assert f"test_synthetic cache reused: {folder}" in caplog.messages
        assert (folder / "train_ids.npy").stat().st_mtime_ns == before  # not rewritten
        assert not rebuilt_warnings(caplog)

        os.utime(folder / "train_ids.npy", ns=(before, before + 10**9))  # as `cp -r` does: content intact
        full_reads = []
        real = cache._crc_full
        monkeypatch.setattr(cache, "_crc_full", lambda p: full_reads.append(p.name) or real(p))
        caplog.clear()
        cache.prepare(src, tmp_path)
        assert f"test_synthetic cache reused: {folder}" in caplog.messages and "train_ids.npy" in full_reads
        files = json.loads((folder / cache.MARKER).read_text())["files"]
        assert files["train_ids.npy"]["mtime_ns"] == before + 10**9  # recorded: the next open samples again
        full_reads.clear()
        cache.prepare(src, tmp_path)
        assert "train_ids.npy" not in full_reads


def test_cache_from_before_checksums_is_rebuilt(tmp_path, caplog):
    src = small()
    folder = cache.prepare(src, tmp_path)
    meta = json.loads((folder / cache.MARKER).read_text())
    old = {"key_hash": meta["key_hash"], "sizes": {n: r["size"] for n, r in meta["files"].items()}}
    (folder / cache.MARKER).write_text(json.dumps(old))
    with caplog.at_level(logging.INFO, logger="ctrlab.data.cache"):
        cache.prepare(src, tmp_path)
    assert any("without checksums" in w for w in rebuilt_warnings(caplog))
    assert json.loads((folder / cache.MARKER).read_text())["version"] == cache.MARKER_VERSION


def test_damaged_crosses_are_detected_and_rebuilt(tmp_path, caplog):
    base = cache.prepare(small(), tmp_path)
    spec = CrossSpec(pairs="all", min_count=3)
    folder = prepare_crosses(base, spec)
    crosses = np.load(folder / "valid_crosses.npy")
    overwrite(folder / "valid_crosses.npy", 500, b"\x01\x02")
    with caplog.at_level(logging.INFO, logger="ctrlab.data.cache"):
        assert prepare_crosses(base, spec, "full") == folder
    assert any("valid_crosses.npy is damaged" in w for w in rebuilt_warnings(caplog))
    assert any(m.startswith("test_synthetic crosses built in ") for m in caplog.messages)
    np.testing.assert_array_equal(np.load(folder / "valid_crosses.npy"), crosses)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ctrlab.data.cache"):
        prepare_crosses(base, spec)
    assert f"test_synthetic crosses reused: {folder}" in caplog.messages


def test_unknown_verify_level_fails_naming_the_key_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"paths.cache_verify = 'fast': allowed values are cheap, full"):
        cache.prepare(small(), tmp_path / "c", "fast")
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="paths.cache_verify"):
        CTRDataModule(small(), str(tmp_path / "c"), 128, 128, seed=0, verify="fast")


def test_leftovers_of_dead_builds_are_removed_and_a_live_ones_kept(tmp_path):
    src = small()
    folder = cache.prepare(src, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is gone
    host = socket.gethostname()
    leftovers = {
        "dead": folder.parent / f".{folder.name}.tmp-{host}-{dead.pid}",
        "dead, from before host names": folder.parent / f".{folder.name}.tmp-{dead.pid}",
        "live": folder.parent / f".other.tmp-{host}-{os.getpid()}",
        "another host's": folder.parent / f".other.tmp-not-{host}-{dead.pid}",
    }
    for tmp in leftovers.values():
        tmp.mkdir()
        (tmp / "train_ids.npy").write_bytes(b"half")
    cache.prepare(src, tmp_path)
    assert {what: tmp.exists() for what, tmp in leftovers.items()} == {
        "dead": False,
        "dead, from before host names": False,
        "live": True,
        "another host's": True,
    }


def test_read_only_cache_root_names_the_key_and_a_built_cache_is_still_read(tmp_path, read_only):
    root = tmp_path / "ro"
    root.mkdir()
    folder = cache.prepare(small(), root / "cache")
    read_only(root, folder.parent.parent, folder.parent, folder)
    assert cache.prepare(small(), root / "cache") == folder  # reading needs no write
    with pytest.raises(PermissionError, match=r"cannot build the cache .*paths\.cache_dir=.*CTRLAB_ROOT") as err:
        cache.prepare(small(seed=1), root / "cache")
    assert str(folder.parent) in str(err.value)


@pytest.mark.parametrize("multirun", [False, pytest.param(True, marks=pytest.mark.slow)])  # ~10 s: torch
def test_unwritable_log_dir_names_the_key(tmp_path, read_only, multirun):
    logs = tmp_path / "logs"
    logs.mkdir()
    read_only(logs)
    args = [*(["-m"] if multirun else []), f"paths.log_dir={logs}", f"paths.cache_dir={tmp_path / 'cache'}"]
    done = run_module("ctrlab.train", *args, timeout=120)
    assert done.returncode != 0
    assert f"{logs} is not writable" in done.stderr and "paths.log_dir=" in done.stderr, done.stderr[-2000:]
    assert "CTRLAB_ROOT" in done.stderr and "Permission denied" not in done.stderr  # not Hydra's bare error


def test_two_processes_building_one_cache_agree(tmp_path):
    """Two real processes asked for the same cache at once: both get the same complete folder, nothing is left
    half-written, and the arrays are the ones a single build writes."""
    code = ("import sys; from ctrlab.data import cache; from tests.helpers import synthetic_source; "
            "print(cache.prepare(synthetic_source(num_rows=30_000), sys.argv[1]))")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "shared")], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    folders = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(folders) == 1
    assert [p.name for p in (tmp_path / "shared").iterdir() if ".tmp" in p.name] == []
    shared, alone = Path(folders.pop()), Path(cache.prepare(synthetic_source(num_rows=30_000), tmp_path / "alone"))
    names = sorted(p.name for p in alone.glob("*.npy"))
    assert names and all((shared / n).read_bytes() == (alone / n).read_bytes() for n in names)
