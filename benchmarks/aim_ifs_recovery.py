"""Does AIM's IFS recover the planted interaction functions? The measurement behind docs/decisions.md, "AIM's IFS on
a stand-in that plants AIM's own functions".

    PYTHONPATH=src:. .venv/bin/python benchmarks/aim_ifs_recovery.py [--seeds 0 1 2] [--pairs 20] [--epochs 10]
        [--rows 100000] [--c 0.05] [--retrain]

Data: the ``functions`` stand-in with ``planted_functions=aim`` (AIM's four forms, each on its own latent table),
10 fields, ``--pairs`` planted pairs, L = 8, pair_std 3, no triples; one data set per seed. Search: AIM's
interaction stage as tests/test_aim.py runs it (function-wise embeddings of size 8, init std 0.01, Adam 3e-3 for the
weights, GRDA γ = 1, μ = 0.6 and ``--c`` for α', batch 1024). Per seed it prints FIS (planted pairs kept, others
dropped), IFS on the kept planted pairs (the function with the largest |α'| equals the planted one: "strict"; or
inner and scalar kernel counted as one, see the note: "class") and the planted -> picked counts.

``--retrain`` also re-trains fixed architectures (the re-train stage without MLP, Adam, same epochs) and prints their
best test log loss: the search's own choice, the planted function per planted pair, the same with inner and scalar
kernel swapped, each single function on the planted pairs, and all four: whether the training loss itself prefers
the planted assignment.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from ctrlab.data import cache
from ctrlab.data.datamodule import BatchLoader
from ctrlab.models.aim import AIM, SPACE
from ctrlab.nn.interaction_functions import FUNCTIONS
from ctrlab.optim import GRDA
from tests.helpers import synthetic_source, train_epochs

DIM = 8
SAME = {"inner": "scalar_kernel", "scalar_kernel": "inner"}  # α'·BN(k f) = sign(k) α'·BN(f): one form, two tables


def aim(feature_map, stage: str, decisions: list[list[str]] | None = None) -> AIM:
    torch.manual_seed(0)
    architecture = None if decisions is None else {SPACE: decisions}
    return AIM(feature_map, stage, 2, list(FUNCTIONS), True, DIM, 0.01, None, 0.0, "none", architecture)


def test_logloss(model: AIM, test: dict[str, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        return F.binary_cross_entropy_with_logits(model(test), test["label"]).item()


def run(seed: int, args: argparse.Namespace) -> None:
    src = synthetic_source(name="ifs", mechanism="functions", planted_functions="aim", num_fields=10,
                           num_pairs=args.pairs, latent_dim=DIM, num_triples=0, pair_std=3.0, num_rows=args.rows,
                           seed=seed)  # fmt: skip
    feature_map, splits = cache.load(cache.prepare(src, Path(tempfile.mkdtemp())))
    planted = feature_map.extra["planted"]
    search = aim(feature_map, "interaction")
    groups = search.parameter_groups()
    opts = [torch.optim.Adam(groups["embedding"] + groups["dense"], lr=3e-3),
            GRDA(groups["arch"], lr=1.0, c=args.c, mu=0.6)]  # fmt: skip
    for _ in train_epochs(search, splits, opts, args.epochs, batch_size=1024):
        pass
    alpha = search.architecture_weights()[SPACE]  # [P, 4]
    pairs = [tuple(p) for p in search.orders[0].units.tolist()]
    truth = {tuple(p): f for p, f in zip(planted["pairs"], planted["functions"], strict=True)}
    picked = {p: FUNCTIONS[int(row.abs().argmax())] for p, row in zip(pairs, alpha, strict=True) if (row != 0).any()}
    kept_planted = [p for p in truth if p in picked]
    strict = sum(picked[p] == truth[p] for p in kept_planted)
    same = sum(picked[p] in (truth[p], SAME.get(truth[p])) for p in kept_planted)
    dropped = sum(p not in picked for p in pairs if p not in truth)
    print(f"seed {seed}: FIS kept {len(kept_planted)}/{len(truth)} planted, dropped {dropped}/{len(pairs) - len(truth)}"
          f" others; IFS strict {strict}/{len(kept_planted)}, class {same}/{len(kept_planted)}; oracle test log loss "
          f"{feature_map.extra['oracle']['test']['logloss']:.4f}")  # fmt: skip
    print("  planted -> picked:", dict(sorted(Counter((truth[p], picked[p]) for p in kept_planted).items())))
    if not args.retrain:
        return
    test = BatchLoader(splits["test"], len(splits["test"]), shuffle=False).batch(slice(None))
    print(f"  {'search (all slots, gated)':42s} {test_logloss(search, test):.4f}")
    candidates = {
        "searched: every kept slot": search.derive()[SPACE],
        "searched: largest |α'| per pair": [[picked[p]] if p in picked else [] for p in pairs],
        "planted function per planted pair": [[truth[p]] if p in truth else [] for p in pairs],
        "planted, inner <-> scalar kernel": [[SAME.get(truth[p], truth[p])] if p in truth else [] for p in pairs],
        **{f"planted pairs, {f} only": [[f] if p in truth else [] for p in pairs] for f in FUNCTIONS},
        "planted pairs, all four": [list(FUNCTIONS) if p in truth else [] for p in pairs],
    }
    for name, decisions in candidates.items():
        model = aim(feature_map, "retrain", decisions)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        best = min(test_logloss(model, test) for _ in train_epochs(model, splits, [opt], args.epochs, batch_size=1024))
        print(f"  {name:42s} {best:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--c", type=float, default=0.05)
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in args.seeds:
        run(seed, args)


if __name__ == "__main__":
    main()
