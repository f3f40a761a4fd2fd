"""The cost of verifying an encoded cache when a run opens it: ``paths.cache_verify=cheap`` vs ``full``.

    .venv/bin/python benchmarks/cache_verify.py [--rows 5000000] [--fields 39] [--workdir /tmp/...]

Writes a made-up cache of ``--rows`` rows x ``--fields`` int32 ids (+ float32 labels; split 70/10/20, the
shape of a Criteo cache) through ``cache.prepare``, so the marker and its checksums are the real ones; then
times opening it (``cache.prepare`` on the built folder, as every run does):

- warm: the files in the page cache (right after the build, as on a machine that just used them);
  best of 3.
- cold: every file's pages dropped first (``posix_fadvise(DONTNEED)``; no root needed). On a VM the host may
  still cache the disk, so "cold" is a lower bound of a truly cold read.

Beside them: the checksums' share of the build, and a run's fixed start (``import ctrlab.train`` in a fresh
interpreter: torch, Lightning, Hydra), the yardstick for "large relative to a run's start".
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ctrlab.data import cache
from ctrlab.data.schema import SPLITS, FeatureMap, Field
from ctrlab.utils import machine_summary

CRITEO_ROWS = 45_840_617
_CHUNK = 500_000  # rows generated and written at a time (bounded memory)


class MadeUpSource:
    """A cache of uniform random ids and Bernoulli(0.25) labels, written in chunks: what verification reads
    does not depend on the values."""

    def __init__(self, rows: int, fields: int, vocab: int = 1000, seed: int = 0) -> None:
        self.name = "bench_cache_verify"
        self.rows, self.fields, self.vocab, self.seed = rows, fields, vocab, seed

    def cache_key(self) -> dict[str, Any]:
        return {"rows": self.rows, "fields": self.fields, "vocab": self.vocab, "seed": self.seed}

    def build(self, out_dir: Path) -> FeatureMap:
        rng = np.random.default_rng(self.seed)
        cuts = (np.cumsum([0.0, 0.7, 0.1, 0.2]) * self.rows).round().astype(int)
        sizes = {split: int(cuts[i + 1] - cuts[i]) for i, split in enumerate(SPLITS)}
        for split, n in sizes.items():
            ids = np.lib.format.open_memmap(out_dir / f"{split}_ids.npy", "w+", np.int32, (n, self.fields))
            labels = np.lib.format.open_memmap(out_dir / f"{split}_labels.npy", "w+", np.float32, (n,))
            for lo in range(0, n, _CHUNK):
                hi = min(n, lo + _CHUNK)
                ids[lo:hi] = rng.integers(0, self.vocab, size=(hi - lo, self.fields), dtype=np.int32)
                labels[lo:hi] = rng.random(hi - lo) < 0.25
            ids.flush()
            labels.flush()
            del ids, labels
        fields = [Field(f"f{i}", self.vocab) for i in range(self.fields)]
        return FeatureMap(dataset=self.name, fields=fields, split_sizes=sizes)


def drop_page_cache(folder: Path) -> None:
    """Ask the kernel to forget the cached pages of every file in ``folder`` (clean pages: no root needed)."""
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())  # dirty pages would stay cached
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def timed(fn, repeat: int = 1, before=None) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` (``before()`` untimed ahead of each)."""
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run_start() -> float:
    """Seconds a fresh interpreter takes to import ``ctrlab.train`` (best of 2; the second is page-cached)."""
    code = "import time; t = time.perf_counter(); import ctrlab.train; print(time.perf_counter() - t)"
    return min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(2))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--fields", type=int, default=39)
    ap.add_argument("--workdir", type=Path, default=None, help="where the cache goes (default: a temp folder)")
    args = ap.parse_args()

    print(machine_summary(), "| load average", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    root = Path(tempfile.mkdtemp(prefix="cache_verify_", dir=args.workdir))
    try:
        source = MadeUpSource(args.rows, args.fields)
        build_s = timed(lambda: cache.prepare(source, root))
        folder = root / source.name / cache.key_hash(source.cache_key())
        files = [p for p in sorted(folder.iterdir()) if p.suffix == ".npy"]
        size = sum(p.stat().st_size for p in files)
        record_s = timed(lambda: [cache._record(p) for p in files])  # the checksums' share of the build (warm)
        print(f"cache: {args.rows:,} rows x {args.fields} int32 ids + labels, {len(files)} arrays, "
              f"{size / 1e9:.2f} GB in {folder}")  # fmt: skip
        print(f"build: {build_s:.1f} s, of which the checksums (size, mtime, 2 CRC-32s a file) {record_s:.2f} s")

        rows = []
        for verify in cache.VERIFY:
            warm = timed(lambda v=verify: cache.prepare(source, root, v), repeat=3)
            cold = timed(lambda v=verify: cache.prepare(source, root, v), before=lambda: drop_page_cache(folder))
            rows.append((verify, warm, cold))
        start_s = run_start()

        scale = CRITEO_ROWS / args.rows
        print()
        print("| open with | warm | cold | full Criteo (45.8M rows), warm, linear |")
        print("|---|---|---|---|")
        for verify, warm, cold in rows:
            criteo = f"{warm * scale:.2f} s" if verify == "full" else "same (reads ~2 MiB a file)"
            print(f"| `{verify}` | {warm:.3f} s | {cold:.3f} s | {criteo} |")
        full_warm = rows[1][1]
        print(f"\nfull, warm: {size / full_warm / 1e9:.1f} GB/s; a run's start (import ctrlab.train): {start_s:.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
