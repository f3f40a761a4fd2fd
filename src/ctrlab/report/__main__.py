"""Write and print a paper-vs-reproduced table: ``python -m ctrlab.report --paper dynint --table table1``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ctrlab.report.tables import write_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ctrlab.report", description=__doc__)
    parser.add_argument("--paper", required=True, help="paper key: dynint | dpn | optinter | aim")
    parser.add_argument("--table", required=True, help="table key, e.g. table1")
    parser.add_argument(
        "--runs",
        required=True,
        action="append",
        type=Path,
        help="a multirun (or single run) folder; repeat for several",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: results/<paper>)")
    parser.add_argument(
        "--scale",
        help="the budget the runs used: smoke | default | paper (default: the one "
        "the runs recorded in .hydra/hydra.yaml)",
    )
    parser.add_argument(
        "--configs",
        type=Path,
        default=Path("configs"),
        help="the repository's configs folder, to tell 'not run' from 'not yet implemented'",
    )
    args = parser.parse_args(argv)
    out = args.out or Path("results") / args.paper
    try:
        md = write_table(args.paper, args.table, args.runs, out, args.configs, args.scale)
    except (KeyError, ValueError, FileNotFoundError) as err:  # a wrong table or run folder: say so, no traceback
        parser.error(err.args[0] if err.args else str(err))
    print(md.read_text(encoding="utf-8"))
    print(f"written: {md} and {md.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
