"""Preprocessing speed and memory of the Criteo recipes, with cross features, on a generated raw file.

Generates a raw Criteo-format ``train.txt`` of ``--rows`` made-up lines (``tests/rawgen.py``), builds each
recipe's cache from scratch in a fresh process (parse, count, encode, write), then its cross-product
features (``data.crosses`` of the recipe's config), and prints rows/s and peak resident memory of each
phase. To extrapolate memory to full Criteo (45.8M rows) it repeats the builds on a file of ``--rows / 5``
lines and fits ``peak = a + b * rows`` through the two points: the parts that grow with the data (value
counts, the permutation, a cross's train codes) grow at most linearly, so the line is an upper bound.

    .venv/bin/python benchmarks/preprocess.py [--rows 5000000] [--recipes dynint optinter] [--no-crosses]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.rawgen lives there
from ctrlab.utils import machine_summary  # noqa: E402
from tests.rawgen import benchmark_recipe  # noqa: E402

FULL_CRITEO_ROWS = 45_840_617


def _extrapolate(small: dict, large: dict, key: str) -> float:
    """The line through (rows, key) of two runs, evaluated at full Criteo's size. MB"""
    slope = (large[key] - small[key]) / (large["num_rows"] - small["num_rows"])
    return large[key] + max(slope, 0.0) * (FULL_CRITEO_ROWS - large["num_rows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--recipes", nargs="+", default=["dynint", "optinter"], choices=["dynint", "optinter"])
    parser.add_argument("--no-crosses", dest="crosses", action="store_false")
    parser.add_argument("--workdir", default=None, help="where the raw files and caches go (default: a temp dir)")
    args = parser.parse_args()
    print(f"machine: {machine_summary()}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for recipe in args.recipes:
            runs = [benchmark_recipe(recipe, n, Path(tmp), crosses=args.crosses) for n in (args.rows // 5, args.rows)]
            for r in runs:
                line = (
                    f"{recipe:8s} {r['num_rows']:>10,} rows ({r['file_mb']:,.0f} MB): base {r['build_s']:7.1f} s "
                    f"{r['rows_per_s']:>9,.0f} rows/s peak {r['peak_rss_mb']:7,.0f} MB"
                )
                if args.crosses:
                    line += (
                        f" | {r['num_crosses']} crosses {r['crosses_s']:7.1f} s "
                        f"{r['num_rows'] / r['crosses_s']:>9,.0f} rows/s peak {r['crosses_peak_rss_mb']:7,.0f} MB, "
                        f"{r['crosses_gb']:.2f} GB on disk"
                    )
                print(line, flush=True)
            small, large = runs
            base_peak = _extrapolate(small, large, "peak_rss_mb")
            line = f"{recipe:8s} extrapolated to {FULL_CRITEO_ROWS:,} rows: base peak {base_peak:,.0f} MB"
            if args.crosses:
                line += (
                    f", crosses peak {_extrapolate(small, large, 'crosses_peak_rss_mb'):,.0f} MB, "
                    f"{large['crosses_gb'] * FULL_CRITEO_ROWS / large['num_rows']:,.0f} GB of crosses on disk"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
