"""The encoded cache: ``.npy`` arrays + ``feature_map.json`` under a folder keyed by what made them.

A source (a dataset reader + its recipe) describes itself by ``cache_key()`` — the recipe config, the raw
files' fingerprint and the recipe's code version. Its hash names the cache folder, so a changed recipe or
raw file gives a new folder. The folder is built under a temporary name and renamed into place only once
every array is written and checked, so a crash never leaves a half-written cache behind; a folder whose
marker or arrays do not match (truncated by hand, copied partially) is detected and rebuilt.

Layout of one cache folder::

    feature_map.json
    {split}_ids.npy      int32   [N, F]        local ids of the scalar fields (see schema.py)
    {split}_values.npy   float32 [N, F]        only when feature_map.has_values
    {split}_bags.npy     int32   [N, F_bag, L] only with multi-valued / sequence fields, 0-padded
    {split}_labels.npy   float32 [N]
    _COMPLETE.json       the key, and the byte size of every file above
    crosses/<hash>/      cross-product features, a layer built on demand (crosses.py)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ctrlab.data.schema import SPLITS, FeatureMap

log = logging.getLogger(__name__)

MARKER = "_COMPLETE.json"


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


def marked_valid(folder: Path, key: dict[str, Any], check: Callable[[Path], None], what: str) -> bool:
    """True when ``folder`` carries a marker for exactly ``key``, every file it lists has its recorded size,
    and ``check(folder)`` (shapes, dtypes) raises nothing. Shared by the cache and its layers (crosses)."""
    marker = folder / MARKER
    if not marker.exists():
        return False
    try:
        meta = json.loads(marker.read_text())
        if meta["key_hash"] != key_hash(key):
            return False
        for name, size in meta["sizes"].items():
            if (folder / name).stat().st_size != size:
                return False
        check(folder)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        log.warning("%s %s is unusable (%s); it will be rebuilt", what, folder, err)
        return False
    return True


def build_atomically(
    folder: Path, key: dict[str, Any], build: Callable[[Path], list[str]], valid: Callable[[], bool]
) -> None:
    """Run ``build(tmp)`` in a temporary sibling of ``folder``, mark the files it names (with their sizes and
    ``key``), and rename it into place: a crash leaves no half-written ``folder`` behind. ``valid()`` says
    whether a folder that another process renamed into place first is as good as ours."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        sizes = {name: (tmp / name).stat().st_size for name in build(tmp)}
        (tmp / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True, default=str))
        (tmp / MARKER).write_text(json.dumps({"key_hash": key_hash(key), "sizes": sizes}, indent=2))
        if folder.exists():  # an invalid leftover: replace it
            shutil.rmtree(folder)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same folder first
            if not valid():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_cache(folder: Path) -> None:
    _check_arrays(folder, FeatureMap.load(folder / "feature_map.json"))


def is_valid(folder: Path, key: dict[str, Any]) -> bool:
    """True when ``folder`` holds a complete cache built from exactly ``key``."""
    return marked_valid(folder, key, _check_cache, "cache")


def prepare(source: DatasetSource, cache_root: str | Path) -> Path:
    """Return the folder of ``source``'s encoded cache, building it first if missing or invalid."""
    key = source.cache_key()
    folder = Path(cache_root) / source.name / key_hash(key)
    if is_valid(folder, key):
        return folder

    def build(tmp: Path) -> list[str]:
        log.info("building the %s cache in %s", source.name, folder)
        fm = source.build(tmp)
        fm.save(tmp / "feature_map.json")
        _check_arrays(tmp, fm)
        return [*_array_files(fm), "feature_map.json"]

    build_atomically(folder, key, build, lambda: is_valid(folder, key))
    return folder


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
