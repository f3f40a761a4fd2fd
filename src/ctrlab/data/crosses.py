"""Cross-product (memorized) features: one extra id column per pair of categorical fields.

Poly2 learns a weight per cross value and OptInter a memorized embedding per cross value; both need the
pair ``(x_a, x_b)`` encoded as one id with its own vocabulary. The crosses are a layer on top of any prepared
cache, built on demand into ``<cache folder>/crosses/<hash>/`` (the hash covers the pairs and ``min_count``),
so switching them on never rebuilds the base arrays::

    crosses.json           the pairs (field indices) and one Field per cross (its vocab size)
    {split}_crosses.npy    int32 [N, P]
    _COMPLETE.json         as for the base cache (checksums, verified when opened)

Choices (docs/decisions.md):
    * Pairs are formed from the *categorical* fields only (``pairs: all`` = every pair of them). Numeric fields
      (OptInter's min-max scaled Criteo counts) have no values to memorize; OptInter's own code crosses the
      26 categorical Criteo fields (325 pairs) and the 24 Avazu fields (276).
    * A cross is formed from the *encoded* ids of its two fields, so a rare value already folded into its
      field's OOV id crosses as OOV, and missing (id 0) crosses like any other value.
    * The cross values seen at least ``min_count`` times in the train split get ids ``1..K`` (ascending code
      order); every other value, and any first seen in valid/test, gets the OOV id ``K + 1``. Id 0 is unused
      but keeps the layout of ``schema.Field``. ``min_count`` is per recipe: OptInter states 20 on Criteo;
      on Avazu it is not stated (its code uses 1), our avazu configs use the field threshold, 5.

Memory: the train split's ids of the crossed fields (4 bytes a row a field, read with plain reads), one
pair's codes and counts at a time, and the kept codes; the output is written in row chunks with plain
writes, so it never has to fit in memory (full Criteo's 325 OptInter crosses are ~60 GB on disk).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from ctrlab.data.cache import SplitArrays, key_hash, open_or_build
from ctrlab.data.schema import SPLITS, FeatureMap, Field

log = logging.getLogger(__name__)

CROSSES_VERSION = 1
_BINCOUNT_MAX = 1 << 24  # a pair's code space up to this size is counted with bincount, larger ones by sorting
_CHUNK_ROWS = 1 << 18  # rows of a column read
_CHUNK_CELLS = 1 << 25  # rows x pairs encoded at a time (an int32 buffer of 128 MB)
_TABLE_MAX = 1 << 18  # code spaces up to this size are encoded through a direct table (1 MB each at most)


@dataclass(frozen=True)
class CrossSpec:
    """Which pairs to cross and their threshold: ``data.crosses`` in the data configs."""

    pairs: str | Sequence[Sequence[str]]  # "all" (every pair of categorical fields) or [[name_a, name_b], ...]
    min_count: int

    def resolve(self, fm: FeatureMap) -> list[tuple[int, int]]:
        """The pairs as indices into ``fm.fields`` (scalar fields come first, so also ``ids`` columns)."""
        categorical = [i for i, f in enumerate(fm.fields) if f.kind == "categorical"]
        if self.pairs == "all":
            return list(combinations(categorical, 2))
        if isinstance(self.pairs, str):
            raise ValueError(f"data.crosses.pairs = {self.pairs!r}: use 'all' or a list of [field, field] pairs")
        index = {fm.fields[i].name: i for i in categorical}
        out = []
        for pair in self.pairs:
            unknown = [n for n in pair if n not in index]
            if len(pair) != 2 or unknown or pair[0] == pair[1]:
                raise ValueError(
                    f"data.crosses.pairs: {list(pair)} is not a pair of two categorical fields of "
                    f"{fm.dataset} (allowed: {sorted(index)})"
                )
            a, b = sorted(index[n] for n in pair)
            out.append((a, b))
        return sorted(set(out))

    def key(self, fm: FeatureMap) -> dict[str, Any]:
        return {"version": CROSSES_VERSION, "pairs": self.resolve(fm), "min_count": int(self.min_count)}


def _row_chunks(path: Path, rows: int) -> Iterator[np.ndarray]:
    """The rows of an int32 [N, F] ``.npy`` file, ``rows`` at a time, by plain reads (a memory map's pages
    would count as this process's memory). int32 [n, F] each"""
    with path.open("rb") as fh:
        if np.lib.format.read_magic(fh) == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
        for lo in range(0, shape[0], rows):
            n = min(rows, shape[0] - lo)
            yield np.fromfile(fh, dtype=np.int32, count=n * shape[1]).reshape(n, shape[1])


def _columns(path: Path, fields: list[int]) -> dict[int, np.ndarray]:
    """The given columns of an int32 [N, F] ``.npy`` file, read in one pass. {field: int32 [N]}"""
    parts: dict[int, list[np.ndarray]] = {j: [] for j in fields}
    for chunk in _row_chunks(path, _CHUNK_ROWS):
        for j in fields:
            parts[j].append(chunk[:, j].copy())
    return {j: np.concatenate(p) if p else np.empty(0, np.int32) for j, p in parts.items()}


def _kept_codes(train_ids: Path, pairs: list[tuple[int, int]], vocab: np.ndarray, min_count: int) -> list[np.ndarray]:
    """Per pair, the codes ``id_a * V_b + id_b`` seen at least ``min_count`` times in train, ascending."""
    columns = _columns(train_ids, sorted({j for pair in pairs for j in pair}))  # 4 bytes a row a field
    kept = []
    for a, b in pairs:  # one pair at a time bounds memory; build time, not a hot path
        codes = columns[a].astype(np.int64) * vocab[b] + columns[b]  # [N_train]
        space = int(vocab[a] * vocab[b])
        if space <= _BINCOUNT_MAX:
            kept.append(np.flatnonzero(np.bincount(codes, minlength=space) >= min_count))
        else:
            values, counts = np.unique(codes, return_counts=True)
            kept.append(values[counts >= min_count])
    return kept


def _lookup_table(kept: np.ndarray, space: int) -> np.ndarray:
    """code -> cross id for every code of a small space: kept codes 1..K, the rest K + 1. int32 [space]"""
    table = np.full(space, len(kept) + 1, dtype=np.int32)
    table[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return table


def _search(kept: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """codes -> cross ids by binary search in the ascending kept codes (OOV K + 1). int32 [n]"""
    at = np.searchsorted(kept, codes)  # [n]
    hit = kept.take(at, mode="clip") == codes if len(kept) else np.zeros(len(codes), dtype=bool)
    return np.where(hit, at + 1, len(kept) + 1).astype(np.int32)


def build_crosses(
    base: Path, fm: FeatureMap, spec: CrossSpec, out_dir: Path
) -> tuple[list[Field], list[tuple[int, int]]]:
    """Write ``{split}_crosses.npy`` for the cache in ``base`` into ``out_dir``; return the cross fields."""
    pairs = spec.resolve(fm)
    if not pairs:
        raise ValueError(f"data.crosses: {fm.dataset} has fewer than two categorical fields to cross")
    vocab = np.array([f.vocab_size for f in fm.fields], dtype=np.int64)
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    spaces = vocab[a] * vocab[b]  # [P] codes id_a * V_b + id_b; int32 ids keep them below 2^62
    kept = _kept_codes(base / "train_ids.npy", pairs, vocab, spec.min_count)
    sizes = np.array([len(k) for k in kept], dtype=np.int64)  # K_p
    # a small code space gets a direct table code -> id; a large one is looked up by binary search
    tables = [_lookup_table(k, int(s)) if s <= _TABLE_MAX else None for k, s in zip(kept, spaces, strict=True)]

    for split in SPLITS:
        step = max(1, _CHUNK_CELLS // len(pairs))
        n_rows = fm.split_sizes[split]
        # plain sequential writes, not a memory map: a written map's pages count as this process's memory
        with (out_dir / f"{split}_crosses.npy").open("wb") as fh:
            header = {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)),
                "fortran_order": False,
                "shape": (n_rows, len(pairs)),
            }
            np.lib.format.write_array_header_2_0(fh, header)
            for chunk in _row_chunks(base / f"{split}_ids.npy", step):
                columns = np.ascontiguousarray(chunk.T, dtype=np.int64)  # [F, n]
                encoded = np.empty((len(pairs), columns.shape[1]), dtype=np.int32)  # [P, n]
                for p, (i, j) in enumerate(pairs):  # per pair: its lookup stays in cache (build time)
                    codes = columns[i] * vocab[j] + columns[j]  # [n]
                    encoded[p] = tables[p][codes] if tables[p] is not None else _search(kept[p], codes)
                fh.write(np.ascontiguousarray(encoded.T).tobytes())  # rows [n, P] in order
    log.info("%s: %d crosses (min_count %d), %d kept values", fm.dataset, len(pairs), spec.min_count, int(sizes.sum()))
    names = [f.name for f in fm.fields]
    fields = [Field(f"{names[i]}x{names[j]}", int(k) + 2) for (i, j), k in zip(pairs, sizes, strict=True)]
    return fields, pairs


def _checker(fm: FeatureMap) -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        num_pairs = len(json.loads((folder / "crosses.json").read_text())["pairs"])
        for split in SPLITS:
            arr = np.load(folder / f"{split}_crosses.npy", mmap_mode="r")
            if arr.shape != (fm.split_sizes[split], num_pairs) or arr.dtype != np.int32:
                raise ValueError(f"{split}_crosses.npy: {arr.shape} {arr.dtype}, expected [N, {num_pairs}] int32")

    return check


def prepare_crosses(base: Path, spec: CrossSpec, verify: str = "cheap") -> Path:
    """Return the folder of the crosses ``spec`` asks for on the cache ``base``, building it if missing or
    damaged (atomically and verified like ``cache.prepare``; ``verify``: cheap | full)."""
    fm = FeatureMap.load(base / "feature_map.json")
    key = spec.key(fm)

    def build(tmp: Path) -> list[str]:
        fields, pairs = build_crosses(base, fm, spec, tmp)
        meta = {"pairs": [list(p) for p in pairs], "fields": [asdict(f) for f in fields], "min_count": spec.min_count}
        (tmp / "crosses.json").write_text(json.dumps(meta, indent=2))
        return ["crosses.json", *[f"{s}_crosses.npy" for s in SPLITS]]

    return open_or_build(base / "crosses" / key_hash(key), key, build, _checker(fm), f"{fm.dataset} crosses", verify)


def attach_crosses(folder: Path, fm: FeatureMap, splits: dict[str, SplitArrays]) -> None:
    """Memory-map the crosses in ``folder`` into ``splits`` and record them in ``fm``."""
    meta = json.loads((folder / "crosses.json").read_text())
    fm.cross_fields = [Field(**f) for f in meta["fields"]]
    fm.cross_pairs = [tuple(p) for p in meta["pairs"]]
    for split, arrays in splits.items():
        arrays.crosses = np.load(folder / f"{split}_crosses.npy", mmap_mode="r")
