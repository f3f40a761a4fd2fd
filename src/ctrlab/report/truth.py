"""What a report can say beyond the paper's numbers: how far each row is from the truth, and whether it trained long
enough.

- **Oracle**: on a synthetic stand-in the true click probability is known; its test AUC and log loss (each run
  records them as ``oracle``) are the best any model can do in expectation, so every row is shown with its gap to
  them. Real data has no oracle.
- **Plateau check**: per row x dataset, the epochs run, how often early stopping fired and the epoch the monitor
  chose; a row where early stopping never fired ran out of budget before its monitor plateaued.
- **Planted-truth claims** (``resources/planted_claims.yaml``): the ranking a paper table reports, restated as
  claims a stand-in can test ("LR < FM"), each decided from the runs with a Welch t-test over seeds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import polars as pl
import yaml
from scipy import stats as sps

from ctrlab.report.paper import PaperTable, metric_name

LOWER_IS_BETTER = frozenset({"logloss"})
ORACLE_TOLERANCE = 1e-9  # runs of one data config score the same true probabilities: equal up to float noise
CLAIM_TESTS = ("less", "at_most", "near_oracle")


def better_sign(metric: str) -> float:
    """+1 where higher is better (AUC), -1 where lower is (log loss): ``sign * (a - b) > 0`` means a is better."""
    return -1.0 if metric in LOWER_IS_BETTER else 1.0


def welch_p_value(ours: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Two-tailed p-value of Welch's unequal-variance t-test of two samples; None with fewer than 2 values on
    either side, or when the test is undefined (neither sample varies)."""
    if len(ours) < 2 or len(baseline) < 2:
        return None
    p = float(sps.ttest_ind(ours, baseline, equal_var=False).pvalue)
    return None if math.isnan(p) else p


@dataclass(frozen=True)
class Oracle:
    """The true click probability's test metrics on one stand-in column, over the runs that record them."""

    mean: dict[str, float]  # metric -> mean over the runs that record it
    spread: dict[str, tuple[float, float]]  # metric -> (min, max) over those runs
    recorded: int  # runs that record an oracle
    runs: int  # runs of the column

    @property
    def agree(self) -> bool:
        """Every run records the same oracle (as runs of one data config must)."""
        return self.recorded == self.runs and all(hi - lo <= ORACLE_TOLERANCE for lo, hi in self.spread.values())

    def disagreement(self) -> str:
        """Why the mean is not one shared number, for the header; empty when the runs agree."""
        if self.agree:
            return ""
        parts = [f"{metric_name(m)} {lo:.6f}–{hi:.6f}" for m, (lo, hi) in self.spread.items()]
        return (
            f"the runs disagree on the oracle ({self.recorded} of {self.runs} runs record one; "
            f"{', '.join(parts)}): the mean is shown"
        )


def oracles(runs: pl.DataFrame, datasets: Sequence[str], metrics: Sequence[str]) -> dict[str, Oracle | None]:
    """Per paper dataset, the oracle its runs record (``oracle/<metric>`` columns), or None where none does
    (real data)."""
    out: dict[str, Oracle | None] = {}
    for dataset in datasets:
        here = runs.filter(pl.col("paper_dataset") == dataset)
        recorded = here.filter(pl.all_horizontal(pl.col(f"oracle/{m}").is_not_null() for m in metrics))
        if recorded.is_empty():
            out[dataset] = None
            continue
        out[dataset] = Oracle(
            mean={m: float(recorded[f"oracle/{m}"].mean()) for m in metrics},
            spread={m: (float(recorded[f"oracle/{m}"].min()), float(recorded[f"oracle/{m}"].max())) for m in metrics},
            recorded=recorded.height,
            runs=here.height,
        )
    return out


@dataclass(frozen=True)
class Plateau:
    """How one row x dataset's runs ended: did their monitor plateau before the budget ran out?"""

    runs: int
    epochs: tuple[int, int] | None  # epochs run, (min, max) over runs
    max_epochs: tuple[int, ...]  # the budgets the runs had
    stopped: int | None  # runs in which early stopping fired; None when no run records it
    best_epoch: tuple[int, int] | None  # the selected checkpoint's epoch, (min, max) over runs
    monitors: tuple[str, ...]  # what chose it

    @property
    def maybe_unconverged(self) -> bool:
        """Early stopping never fired: every run trained until its budget ended."""
        return self.stopped == 0


def plateaus(runs: pl.DataFrame) -> dict[tuple[str, str], Plateau]:
    """Per (row key, paper dataset), the plateau check of its runs."""

    def span(values: list[int | None]) -> tuple[int, int] | None:
        known = [v for v in values if v is not None]
        return (min(known), max(known)) if known else None

    out = {}
    for (model, dataset), part in runs.group_by("model", "paper_dataset"):
        stopped = part["stopped_early"].drop_nulls()
        out[model, dataset] = Plateau(
            runs=part.height,
            epochs=span(part["epochs"].to_list()),
            max_epochs=tuple(sorted(set(part["max_epochs"].drop_nulls().to_list()))),
            stopped=int(stopped.sum()) if stopped.len() else None,
            best_epoch=span(part["best_epoch"].to_list()),
            monitors=tuple(sorted(set(part["monitor"].drop_nulls().to_list()))),
        )
    return out


def _range(span: tuple[int, int]) -> str:
    lo, hi = span
    return str(lo) if lo == hi else f"{lo}–{hi}"


def plateau_line(name: str, p: Plateau) -> str:
    """One line of the plateau check, e.g. ``DeepFM: 2–3 epochs of 10; early stopping fired in 2 of 2 runs;
    selected epoch 1–2 on val/auc``."""
    budget = f" of {'/'.join(map(str, p.max_epochs))}" if p.max_epochs else ""
    parts = [f"{_range(p.epochs)} epochs{budget}" if p.epochs else "epochs not recorded"]
    parts.append(
        "early stopping not recorded" if p.stopped is None else f"early stopping fired in {p.stopped} of {p.runs} runs"
    )
    if p.best_epoch:
        on = f" on {', '.join(p.monitors)}" if p.monitors else ""
        parts.append(f"selected epoch {_range(p.best_epoch)}{on}")
    line = f"{name}: {'; '.join(parts)}"
    if p.maybe_unconverged:
        line += " — **possibly not converged**: the budget ended before the monitor plateaued"
    return line


@dataclass(frozen=True)
class Claim:
    """``left <relation> right`` on ``metric``, as a paper table reports it (see planted_claims.yaml)."""

    text: str
    test: str  # less | at_most | near_oracle
    left: tuple[str, ...]  # row keys
    right: tuple[str, ...]
    max_gap: float | None  # near_oracle: how far below the oracle the best row may be
    metric: str


@dataclass(frozen=True)
class ClaimResult:
    """A claim decided on one data column: ``verdict`` is yes | no | not tested (...), ``detail`` the numbers."""

    claim: Claim
    verdict: str
    detail: str
    diff: float | None = None  # less / at_most: mean(right) - mean(left); near_oracle: oracle - best (better-signed)
    p_value: float | None = None

    def line(self) -> str:
        return f"{self.claim.text}: {self.verdict}" + (f" — {self.detail}" if self.detail else "")


@functools.cache
def _claims_file() -> dict[str, Any]:
    return yaml.safe_load((files("ctrlab") / "resources" / "planted_claims.yaml").read_text(encoding="utf-8"))


def claims_alpha() -> float:
    """The level below which a claim's Welch test counts as significant."""
    return float(_claims_file()["alpha"])


def get_claims(table: PaperTable) -> tuple[Claim, ...]:
    """The planted-truth claims of a paper table (none for most tables), checked against its rows and metrics."""
    specs = _claims_file()["claims"].get(table.paper, {}).get(table.key, [])
    keys = {str(r[table.row_key[0]]) for r in table.rows}
    out = []
    for spec in specs:
        where = f"planted_claims.yaml {table.paper}.{table.key} claim {spec.get('claim')!r}"
        if spec.get("test") not in CLAIM_TESTS:
            raise ValueError(f"{where}: test={spec.get('test')!r}; allowed: {', '.join(CLAIM_TESTS)}")
        claim = Claim(
            spec["claim"],
            spec["test"],
            tuple(spec.get("left", ())),
            tuple(spec.get("right", ())),
            spec.get("max_gap"),
            spec.get("metric", "auc"),
        )
        unknown = sorted(set(claim.left + claim.right) - keys)
        if unknown:
            raise ValueError(
                f"{where}: rows {', '.join(unknown)} are not rows of the table (allowed: {', '.join(sorted(keys))})"
            )
        if claim.metric not in table.metrics:
            raise ValueError(f"{where}: metric={claim.metric!r}; allowed: {', '.join(table.metrics)}")
        if (claim.test == "near_oracle") != (claim.max_gap is not None) or (
            claim.test != "near_oracle" and not (claim.left and claim.right)
        ):
            raise ValueError(
                f"{where}: test={claim.test} needs "
                + ("max_gap" if claim.test == "near_oracle" else "left and right rows, and no max_gap")
            )
        out.append(claim)
    return tuple(out)


def _fmt_p(p: float) -> str:
    return f"{p:.2g}"


def check_claim(
    claim: Claim,
    dataset: str,
    values: dict[tuple[str, str, str], list[float]],
    names: dict[str, str],
    oracle: Oracle | None,
    alpha: float,
) -> ClaimResult:
    """Decide ``claim`` on one data column from the runs' test values per (row key, dataset, metric)."""
    m, sign = claim.metric, better_sign(claim.metric)
    name = metric_name(m)
    if claim.test == "near_oracle":
        means = {row: sum(v) / len(v) for (row, d, k), v in values.items() if d == dataset and k == m and v}
        if oracle is None or not means:
            return ClaimResult(claim, "not tested", "no oracle" if oracle is None else "no runs")
        best = max(means, key=lambda row: sign * means[row])
        gap = sign * (oracle.mean[m] - means[best])  # how far the best row falls short of the oracle
        verdict = "yes" if gap <= claim.max_gap else "no"
        return ClaimResult(
            claim,
            verdict,
            f"best row {names[best]} {means[best]:.4f} is {gap:.4f} {name} from "
            f"the oracle {oracle.mean[m]:.4f} (allowed {claim.max_gap:g})",
            gap,
        )

    def pooled(rows: tuple[str, ...]) -> list[float]:
        return [v for row in rows for v in values.get((row, dataset, m), [])]

    left, right = pooled(claim.left), pooled(claim.right)
    if not left or not right:
        absent = claim.left if not left else claim.right
        return ClaimResult(claim, "not tested", f"no runs of {', '.join(names[r] for r in absent)}")
    diff = sum(right) / len(right) - sum(left) / len(left)  # right - left, as the claim reads

    def ran(rows: tuple[str, ...]) -> str:  # the rows a pooled side really holds
        return ", ".join(names[r] for r in rows if values.get((r, dataset, m)))

    runs = "run" if len(left) == 1 else "runs"
    numbers = (
        f"right − left = {diff:+.4f} {name} (n = {len(left)} {runs} of {ran(claim.left)} vs {len(right)} "
        f"of {ran(claim.right)})"
    )
    p = welch_p_value(right, left)
    if p is None:
        why = "n<2" if min(len(left), len(right)) < 2 else "no variance"
        return ClaimResult(claim, f"not tested ({why})", numbers, diff)
    significant = p < alpha
    # less: right is significantly better; at_most: right is not significantly worse
    holds = sign * diff > 0 and significant if claim.test == "less" else not (sign * diff < 0 and significant)
    return ClaimResult(claim, "yes" if holds else "no", f"{numbers}, p = {_fmt_p(p)}", diff, p)
