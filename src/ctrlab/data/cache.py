"""The encoded cache: ``.npy`` arrays + ``feature_map.json`` under a folder keyed by what made them.

A source (a dataset reader + its recipe) describes itself by ``cache_key()`` — the recipe config, the raw
files' fingerprint and the recipe's code version. Its hash names the cache folder, so a changed recipe or
raw file gives a new folder. The folder is built under a temporary name and renamed into place only once
every array is written and checked, so a crash never leaves a half-written cache behind; a folder whose
marker or arrays do not match (truncated by hand, copied partially, bytes overwritten) is detected and rebuilt,
with a warning naming the file. A temporary folder left by a killed build is removed once its process is gone.

Verification (``paths.cache_verify``; docs/decisions.md, "Trustworthy caches"). The marker records, per file,
its size, mtime and two CRC-32s: of the whole file and of ``_SAMPLED_BLOCKS`` blocks of ``_BLOCK`` bytes
spread evenly over it (the whole file when it is smaller). Opening a cache checks every file:

    cheap  size; then, if the mtime is the build's, the sampled blocks; if the mtime changed (any write through
           the file system since the build, or a copy that did not keep times), the whole file.
           Misses only same-size damage outside the sampled blocks whose mtime is the build's (restored by
           hand, bit rot below the file system). Reads ~2 MiB a file.
    full   size and the whole file's CRC-32 (reads every byte).

Layout of one cache folder::

    feature_map.json
    {split}_ids.npy      int32   [N, F]        local ids of the scalar fields (see schema.py)
    {split}_values.npy   float32 [N, F]        only when feature_map.has_values
    {split}_bags.npy     int32   [N, F_bag, L] only with multi-valued / sequence fields, 0-padded
    {split}_labels.npy   float32 [N]
    _COMPLETE.json       the key's hash, and size, mtime and checksums of every file above
    crosses/<hash>/      cross-product features, a layer built on demand (crosses.py)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ctrlab.data.schema import SPLITS, FeatureMap
from ctrlab.utils import require_writable, write_json

log = logging.getLogger(__name__)

MARKER = "_COMPLETE.json"
MARKER_VERSION = 2  # 2: per-file size, mtime and CRC-32s (1 had sizes only: such a cache is rebuilt)
VERIFY = ("cheap", "full")  # paths.cache_verify
_BLOCK = 1 << 16  # bytes of one sampled block
_SAMPLED_BLOCKS = 32  # the cheap check reads at most 2 MiB of a file
_READ = 1 << 23  # bytes of one read of a full checksum


class DatasetSource(Protocol):
    """A raw dataset plus its preprocessing recipe; knows how to write the encoded arrays."""

    name: str

    def cache_key(self) -> dict[str, Any]:
        """Everything the encoded arrays depend on (JSON-serialisable)."""

    def build(self, out_dir: Path) -> FeatureMap:
        """Write ``{split}_ids/labels[/values].npy`` into ``out_dir`` and return the feature map."""


@dataclass
class SplitArrays:
    ids: np.ndarray  # int32 [N, F]
    labels: np.ndarray  # float32 [N]
    values: np.ndarray | None = None  # float32 [N, F]
    bags: np.ndarray | None = None  # int32 [N, F_bag, L]
    crosses: np.ndarray | None = None  # int32 [N, P], when a run asks for cross features

    def __len__(self) -> int:
        return len(self.labels)


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_fingerprint(path: str | Path, probe_bytes: int = 1 << 20) -> dict[str, Any]:
    """Size, mtime and a hash of the first and last MiB: cheap, and changes when the file does."""
    p = Path(path)
    st = p.stat()
    h = hashlib.sha256()
    with p.open("rb") as fh:
        h.update(fh.read(probe_bytes))
        if st.st_size > probe_bytes:
            fh.seek(max(st.st_size - probe_bytes, probe_bytes))
            h.update(fh.read(probe_bytes))
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "probe": h.hexdigest()}


def _array_files(fm: FeatureMap) -> list[str]:
    names = []
    for split in SPLITS:
        names += [f"{split}_ids.npy", f"{split}_labels.npy"]
        if fm.has_values:
            names.append(f"{split}_values.npy")
        if fm.bag_fields:
            names.append(f"{split}_bags.npy")
    return names


def _check_arrays(folder: Path, fm: FeatureMap) -> None:
    """Raise ValueError unless every array has the shape and dtype the feature map promises."""
    for split in SPLITS:
        n = fm.split_sizes[split]
        num_scalar = len(fm.scalar_fields)
        expected = {"ids": ((n, num_scalar), np.int32), "labels": ((n,), np.float32)}
        if fm.has_values:
            expected["values"] = ((n, num_scalar), np.float32)
        if fm.bag_fields:
            expected["bags"] = ((n, len(fm.bag_fields), fm.bag_len), np.int32)
        for kind, (shape, dtype) in expected.items():
            arr = np.load(folder / f"{split}_{kind}.npy", mmap_mode="r")
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(
                    f"{folder / f'{split}_{kind}.npy'}: shape {arr.shape} {arr.dtype}, expected {shape} {dtype}"
                )


def _crc_full(path: Path) -> int:
    """CRC-32 of every byte of ``path``, read in ``_READ``-byte pieces into one buffer."""
    crc, buf = 0, bytearray(_READ)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return crc


def _crc_sampled(path: Path, size: int) -> int:
    """CRC-32 of ``_SAMPLED_BLOCKS`` blocks spread evenly from the first byte to the last (the header and the
    tail always among them); of the whole file when it is no larger than the blocks."""
    if size <= _BLOCK * _SAMPLED_BLOCKS:
        return _crc_full(path)
    crc = 0
    with path.open("rb") as fh:
        for offset in np.linspace(0, size - _BLOCK, _SAMPLED_BLOCKS).astype(np.int64).tolist():
            fh.seek(offset)
            crc = zlib.crc32(fh.read(_BLOCK), crc)
    return crc


def _record(path: Path) -> dict[str, int]:
    """What the marker keeps of one file, for ``_damage``."""
    st = path.stat()
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "crc32": _crc_full(path),
        "sampled_crc32": _crc_sampled(path, st.st_size),
    }


def _damage(path: Path, record: dict[str, int], verify: str) -> str | None:
    """Why ``path`` is not the file its build recorded (module docstring: cheap, full), or None."""
    st = path.stat()
    if st.st_size != record["size"]:
        return f"{st.st_size} bytes, built with {record['size']}"
    if verify == "cheap" and st.st_mtime_ns == record["mtime_ns"]:
        if _crc_sampled(path, st.st_size) != record["sampled_crc32"]:
            return "same size, but its sampled blocks differ from the build's (CRC-32)"
        return None
    if _crc_full(path) != record["crc32"]:  # full, or written since the build: every byte
        return "same size, but its content differs from the build's (CRC-32)"
    return None


def check_verify(verify: str) -> None:
    """Raise ValueError unless ``verify`` is one of ``VERIFY`` (before any work)."""
    if verify not in VERIFY:
        raise ValueError(f"paths.cache_verify = {verify!r}: allowed values are {', '.join(VERIFY)}")


def marked_valid(folder: Path, key: dict[str, Any], check: Callable[[Path], None], what: str, verify: str) -> bool:
    """True when ``folder`` carries a marker for exactly ``key``, every file it lists is the file the build
    wrote (``_damage`` at level ``verify``), and ``check(folder)`` (shapes, dtypes) raises nothing. Shared
    by the cache and its layers (crosses)."""
    marker = folder / MARKER
    if not marker.exists():
        return False
    try:
        meta = json.loads(marker.read_text())
        if meta.get("version") != MARKER_VERSION:
            log.warning("%s %s has a marker without checksums (an older ctrlab); it will be rebuilt", what, folder)
            return False
        if meta["key_hash"] != key_hash(key):
            return False
        touched = {}
        for name, record in meta["files"].items():
            why = _damage(folder / name, record, verify)
            if why is not None:
                log.warning("%s %s: %s is damaged (%s); it will be rebuilt", what, folder, name, why)
                return False
            mtime_ns = (folder / name).stat().st_mtime_ns
            if mtime_ns != record["mtime_ns"]:
                touched[name] = {**record, "mtime_ns": mtime_ns}
        check(folder)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        log.warning("%s %s is unusable (%s); it will be rebuilt", what, folder, err)
        return False
    if touched:  # intact, but rewritten or copied since the build: record the new mtimes, so the next cheap
        # open samples these files again instead of reading them whole
        try:
            write_json(marker, {**meta, "files": {**meta["files"], **touched}})
        except OSError as err:  # a read-only cache: the next open reads them whole again
            log.info("%s %s: could not record the new mtimes of %s (%s)", what, folder, sorted(touched), err)
    return True


_TMP = re.compile(r"\.(?P<name>.+)\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        pass
    return True


def remove_dead_builds(parent: Path) -> None:
    """Remove the temporary folders that builds killed on this host left in ``parent``: those whose process
    is gone. A live process's folder, or another host's (a shared file system), is never touched."""
    if not parent.is_dir():
        return
    host = socket.gethostname()
    for tmp in parent.iterdir():
        m = _TMP.fullmatch(tmp.name)
        if m is None or not tmp.is_dir() or m["host"] not in (None, host) or _alive(int(m["pid"])):
            continue
        try:
            shutil.rmtree(tmp)
            log.info("removed %s, left by a killed build (process %s is gone)", tmp, m["pid"])
        except OSError as err:
            log.warning("could not remove %s, left by a killed build (%s)", tmp, err)


def build_atomically(
    folder: Path, key: dict[str, Any], build: Callable[[Path], list[str]], valid: Callable[[], bool]
) -> None:
    """Run ``build(tmp)`` in a temporary sibling of ``folder``, mark the files it names (their size, mtime and
    checksums, and ``key``'s hash), and rename it into place: a crash leaves no half-written ``folder`` behind.
    ``valid()`` says whether a folder that another process renamed into place first is as good as ours."""
    require_writable(
        folder.parent,
        what=f"cannot build the cache {folder}",
        key="paths.cache_dir",
        default="$CTRLAB_ROOT/.cache/data",
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        files = {name: _record(tmp / name) for name in build(tmp)}
        (tmp / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True, default=str))
        marker = {"version": MARKER_VERSION, "key_hash": key_hash(key), "files": files}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        if folder.exists():  # an invalid leftover: replace it
            shutil.rmtree(folder)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same folder first
            if not valid():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_or_build(
    folder: Path,
    key: dict[str, Any],
    build: Callable[[Path], list[str]],
    check: Callable[[Path], None],
    what: str,
    verify: str,
) -> Path:
    """Return ``folder`` once it holds ``key``'s files: reused when ``marked_valid``, else built by
    ``build_atomically``. Logs which, with the time of a build (``what``: e.g. "criteo cache")."""
    check_verify(verify)
    remove_dead_builds(folder.parent)
    if marked_valid(folder, key, check, what, verify):
        log.info("%s reused: %s", what, folder)
        return folder
    start = time.perf_counter()
    build_atomically(folder, key, build, lambda: marked_valid(folder, key, check, what, verify))
    log.info("%s built in %.1f s: %s", what, time.perf_counter() - start, folder)
    return folder


def _check_cache(folder: Path) -> None:
    _check_arrays(folder, FeatureMap.load(folder / "feature_map.json"))


def is_valid(folder: Path, key: dict[str, Any], verify: str = "cheap") -> bool:
    """True when ``folder`` holds a complete, undamaged cache built from exactly ``key``."""
    return marked_valid(folder, key, _check_cache, "cache", verify)


def prepare(source: DatasetSource, cache_root: str | Path, verify: str = "cheap") -> Path:
    """Return the folder of ``source``'s encoded cache, building it first if missing, damaged or invalid
    (``verify``: cheap | full, module docstring)."""
    key = source.cache_key()
    folder = Path(cache_root) / source.name / key_hash(key)

    def build(tmp: Path) -> list[str]:
        fm = source.build(tmp)
        fm.save(tmp / "feature_map.json")
        _check_arrays(tmp, fm)
        return [*_array_files(fm), "feature_map.json"]

    return open_or_build(folder, key, build, _check_cache, f"{source.name} cache", verify)


def load(folder: str | Path) -> tuple[FeatureMap, dict[str, SplitArrays]]:
    """Memory-map a prepared cache folder."""
    folder = Path(folder)
    fm = FeatureMap.load(folder / "feature_map.json")
    splits = {}
    for split in SPLITS:
        splits[split] = SplitArrays(
            ids=np.load(folder / f"{split}_ids.npy", mmap_mode="r"),
            labels=np.load(folder / f"{split}_labels.npy", mmap_mode="r"),
            values=np.load(folder / f"{split}_values.npy", mmap_mode="r") if fm.has_values else None,
            bags=np.load(folder / f"{split}_bags.npy", mmap_mode="r") if fm.bag_fields else None,
        )
    return fm, splits


def save_split(out_dir: Path, split: str, arrays: SplitArrays) -> None:
    """Write one split's arrays (for sources that hold a split in memory)."""
    np.save(out_dir / f"{split}_ids.npy", np.ascontiguousarray(arrays.ids, dtype=np.int32))
    np.save(out_dir / f"{split}_labels.npy", np.ascontiguousarray(arrays.labels, dtype=np.float32))
    if arrays.values is not None:
        np.save(out_dir / f"{split}_values.npy", np.ascontiguousarray(arrays.values, dtype=np.float32))
    if arrays.bags is not None:
        np.save(out_dir / f"{split}_bags.npy", np.ascontiguousarray(arrays.bags, dtype=np.int32))
