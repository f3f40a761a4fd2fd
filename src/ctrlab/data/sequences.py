"""Building blocks of behaviour-sequence datasets (``amazon.py``, ``synthetic_sequence.py``), vectorised.

Every example's history is a *window* ``[lo, lo + length)`` of one flat array of behaviours (for Amazon:
all reviews sorted by user and time, so a history is the slice of the user's earlier reviews; for the
synthetic data: the histories generated row after row). Windows let the sources count the train split's
history occurrences without materialising the padded ``[N, L]`` histories (``window_coverage``), and
write the padded histories a chunk of rows at a time (``gather_windows``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctrlab.data.schema import FeatureMap, Field

ROW_CHUNK = 1 << 16  # rows of padded histories built at a time
USER_FIELD = "user_id"  # the user key of DIN's layout: GAUC groups impressions by it (lit/gauc.py)


def din_fields(user_vocab: int, item_vocab: int, cat_vocab: int, max_len: int) -> list[Field]:
    """DIN's layout, shared by Amazon and its synthetic stand-in: the user, the target item and its
    category, and the histories of items and categories (oldest first), which use the target's ids."""
    return [
        Field(USER_FIELD, user_vocab),
        Field("item_id", item_vocab),
        Field("cat_id", cat_vocab),
        Field("hist_item_id", item_vocab, kind="sequence", max_len=max_len, shares="item_id"),
        Field("hist_cat_id", cat_vocab, kind="sequence", max_len=max_len, shares="cat_id"),
    ]


def user_column(feature_map: FeatureMap) -> int | None:
    """The column of the batch's ``ids`` that identifies the user in behaviour-sequence data (a ``sequence`` field
    and a scalar ``user_id`` field, as ``din_fields``); None for other data."""
    names = [f.name for f in feature_map.scalar_fields]
    has_sequence = any(f.kind == "sequence" for f in feature_map.bag_fields)
    return names.index(USER_FIELD) if has_sequence and USER_FIELD in names else None


def train_vocab(counts: np.ndarray, min_count: int, forced_oov: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Local ids from train counts over a raw id space [R]: raw ids counted ``>= min_count`` times get
    1..V in raw-id order, every other raw id the OOV id V + 1; ``forced_oov`` [R] bool marks raw ids that
    are OOV whatever their count (e.g. an unknown category). Returns the lookup [R] int32 and the vocab
    size V + 2 (padding 0 and OOV included)."""
    kept = counts >= max(min_count, 1)
    if forced_oov is not None:
        kept &= ~forced_oov
    new_id = np.cumsum(kept).astype(np.int32)
    oov = int(kept.sum()) + 1
    return np.where(kept, new_id, oov).astype(np.int32), oov + 1


def window_coverage(n: int, lo: np.ndarray, length: np.ndarray, weight: np.ndarray | float = 1.0) -> np.ndarray:
    """How often each position of a flat array of ``n`` behaviours lies inside the windows
    ``[lo, lo + length)``, each window counted ``weight`` times (a difference array). float64 [n]"""
    w = np.broadcast_to(np.asarray(weight, dtype=np.float64), lo.shape)
    diff = np.bincount(lo, w, minlength=n + 1) - np.bincount(lo + length, w, minlength=n + 1)
    return np.cumsum(diff[:n])


def gather_windows(flat: np.ndarray, lo: np.ndarray, length: np.ndarray, max_len: int) -> np.ndarray:
    """Windows of ``flat`` [n] (local ids, all >= 1) as rows padded with 0 at the end, oldest first.
    ``length`` must be <= ``max_len``. Filled one position at a time over the rows still that long (the
    work is the total length, not rows x max_len). int32 [rows, max_len]"""
    out = np.zeros((len(lo), max_len), dtype=np.int32)
    if len(lo) == 0:
        return out
    longest = int(length.max())
    if longest > max_len:
        raise ValueError(f"a window of {longest} behaviours does not fit max_len {max_len}")
    order = np.argsort(-length, kind="stable")  # rows longer than j are the first alive[j] of order
    alive = len(lo) - np.cumsum(np.bincount(length, minlength=longest + 1))
    lo_sorted = lo[order]
    for j in range(longest):  # a loop over positions, vectorised over rows
        k = alive[j]
        out[order[:k], j] = flat[lo_sorted[:k] + j]
    return out


def write_bags(path: Path, flats: list[np.ndarray], lo: np.ndarray, length: np.ndarray, max_len: int) -> None:
    """``{split}_bags.npy`` int32 [n, len(flats), max_len]: row r holds the window ``[lo[r], lo[r] +
    length[r])`` of each flat array, written ``ROW_CHUNK`` rows at a time (bounded memory)."""
    shape = (len(lo), len(flats), max_len)
    if len(lo) == 0:
        np.save(path, np.zeros(shape, dtype=np.int32))
        return
    bags = np.lib.format.open_memmap(path, "w+", np.int32, shape)
    for a in range(0, len(lo), ROW_CHUNK):
        b = min(a + ROW_CHUNK, len(lo))
        for f, flat in enumerate(flats):
            bags[a:b, f] = gather_windows(flat, lo[a:b], length[a:b], max_len)
    bags.flush()
    del bags
