"""A paper row that cannot be reproduced faithfully (``resources/not_reproducible.yaml``) says so, with its reason,
instead of "not yet implemented"."""

from __future__ import annotations

import csv

from ctrlab.report import write_table
from ctrlab.report.paper import get_table, not_reproducible
from tests.test_report import _write_job


def test_an_unreproducible_row_says_so_with_its_reason(tmp_path):
    assert {r["model"] for r in get_table("aim", "table2").rows} >= set(not_reproducible())
    _write_job(tmp_path / "runs" / "0", "fm", "avazu", 0, auc=0.78, logloss=0.38)
    configs = tmp_path / "configs"
    (configs / "model").mkdir(parents=True)
    (configs / "model" / "fm.yaml").write_text("{}\n")
    md = write_table("aim", "table2", [tmp_path / "runs"], tmp_path / "out", configs, "smoke")
    with md.with_suffix(".csv").open() as f:
        status = {(r["model"], r["dataset"], r["metric"]): r["status"] for r in csv.DictReader(f)}
    assert status["autofeature", "avazu", "auc"] == "not reproducible"
    assert status["autogroup", "criteo", "logloss"] == "not yet implemented"  # no config in this configs folder
    assert status["fm", "avazu", "auc"] == "ok"
    text = md.read_text()
    header = text.split("## ")[0]
    assert f"- **Not reproducible**: AutoFeature: {not_reproducible()['autofeature']}." in header
    row = next(line for line in text.split("## Avazu")[1].splitlines() if line.startswith("| AutoFeature "))
    assert "*not reproducible*" in row and "0.7904" in row  # the paper's value stays beside it
