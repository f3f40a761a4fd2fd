"""Sparse embedding updates vs dense Adam, and per-field tables vs one table: DeepFM through ctrlab's own path
(CTRModule + Trainer + BatchLoader) on the peer harness's data set (Criteo-shaped, 39 fields, ~0.95M rows of
embedding at 500k training rows), one epoch per option, samples/s and test AUC, all options in one run.

Options (the embedding family's optimizer; every other parameter is trained by fused Adam in all of them):

    adam            dense gradients, fused Adam on everything (optimizer=adam, the baseline)
    sparse_adam     torch.optim.SparseAdam
    lazy_adam       ctrlab.optim.LazyAdam (optimizer=adam_sparse)
    rowwise_adagrad ctrlab.optim.RowWiseAdagrad (lr --adagrad-lr)
    adagrad         torch.optim.Adagrad on sparse gradients (element-wise; lr --adagrad-lr)
    ftrl_dense      ctrlab.optim.FTRL on the dense gradient (DynInt's family: what sparse FTRL saves)
    ftrl_sparse     the same FTRL on the sparse gradient (exactly the same update)
    fields_adam     39 per-field tables instead of one, dense fused Adam (the hand-written per-field loop)
    fields_lazy     39 per-field tables, LazyAdam

Options run in turn, ``--repeat`` rounds (interleaved), each in this process with ``--threads`` torch threads;
ratios are to ``adam`` of the same round.

    PYTHONPATH=src .venv/bin/python benchmarks/sparse_embedding.py [--rows 500000] [--repeat 1] [--threads 1] \\
        [--options adam,lazy_adam,...] [--bench ../shared/bench]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_plugin import ROOT, harness_splits, optimizer_config, train_one_epoch  # noqa: E402

from ctrlab.data.schema import FeatureMap  # noqa: E402
from ctrlab.models.deepfm import DeepFM  # noqa: E402
from ctrlab.nn.embedding import FeatureEmbedding  # noqa: E402
from ctrlab.utils import machine_summary  # noqa: E402

OPTIONS = [
    "adam",
    "sparse_adam",
    "lazy_adam",
    "rowwise_adagrad",
    "adagrad",
    "ftrl_dense",
    "ftrl_sparse",
    "fields_adam",
    "fields_lazy",
]


class PerFieldEmbedding(FeatureEmbedding):
    """One nn.Embedding per field instead of one table with offsets (scalar fields only): the layout of FuxiCTR,
    DeepCTR-Torch and the harness's per-field loop, measured here inside ctrlab's path."""

    def __init__(self, feature_map: FeatureMap, dim: int, init_std: float) -> None:
        nn.Module.__init__(self)
        self.tables = nn.ModuleList(nn.Embedding(f.vocab_size, dim) for f in feature_map.scalar_fields)
        for t in self.tables:
            nn.init.normal_(t.weight, std=init_std)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["ids"]  # [B, F]
        return torch.stack([t(ids[:, f]) for f, t in enumerate(self.tables)], dim=1)  # [B, F, D]


def embedding_optimizer(option: str, lr: float, adagrad_lr: float) -> dict:
    """The optimizer config of an option: fused Adam for the default family, the option's for `embedding`."""
    if option in ("adam", "fields_adam"):
        return optimizer_config("adam", lr)
    if option in ("lazy_adam", "fields_lazy"):
        return optimizer_config("adam_sparse", lr)
    target, kw = {
        "sparse_adam": ("torch.optim.SparseAdam", {"lr": lr}),
        "rowwise_adagrad": ("ctrlab.optim.RowWiseAdagrad", {"lr": adagrad_lr}),
        "adagrad": ("torch.optim.Adagrad", {"lr": adagrad_lr}),
        "ftrl_dense": ("ctrlab.optim.FTRL", {"lr": 5e-2, "beta": 1e-3}),
        "ftrl_sparse": ("ctrlab.optim.FTRL", {"lr": 5e-2, "beta": 1e-3}),
    }[option]
    cfg = optimizer_config("adam_sparse", lr)
    cfg["families"]["embedding"] = {"_target_": target, "_partial_": True, **kw}
    cfg["sparse_embedding"] = option != "ftrl_dense"
    return cfg


def build_model(option: str, fm: FeatureMap, emb_dim: int, mlp: list[int]) -> DeepFM:
    model = DeepFM(fm, emb_dim, 1e-4, mlp, 0.0, "none")
    if option.startswith("fields_"):
        model.embedding = PerFieldEmbedding(fm, emb_dim, 1e-4)
        model.linear.weights = PerFieldEmbedding(fm, 1, 0.0)
    return model


def peer_data(bench: Path, rows: int, test_rows: int, seed: int):
    """The harness's data set (its make_data, cached under its own workdir naming)."""
    spec = importlib.util.spec_from_file_location("peer_bench", bench / "peer_bench.py")
    peer_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer_bench)
    args = peer_bench.parse_args(
        ["--rows", str(rows), "--test-rows", str(test_rows), "--seed", str(seed), "--workdir", str(ROOT / ".cache")]
    )
    X, y, sizes, _, _, _ = peer_bench.get_data(args)
    return X, y, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--test-rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--adagrad-lr", type=float, default=1e-2)
    parser.add_argument("--emb-dim", type=int, default=16)
    parser.add_argument("--mlp", type=lambda s: [int(x) for x in s.split(",")], default=[400, 400, 400])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma list from: " + ",".join(OPTIONS))
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "bench", help="the peer harness")
    args = parser.parse_args()
    options = args.options.split(",")
    options = ["adam"] + [o for o in options if o != "adam"]  # the baseline first: ratios are to its round
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        parser.error(f"--options {args.options}: unknown {unknown}; allowed: {OPTIONS}")
    torch.set_num_threads(args.threads)
    print(f"machine: {machine_summary()}")
    X, y, sizes = peer_data(args.bench, args.rows, args.test_rows, args.seed)
    fm, train, test = harness_splits(X, y, sizes, args.rows)
    print(f"data: peer set, {args.rows:,} train / {args.test_rows:,} test rows, {fm.total_vocab:,} embedding rows")
    results: dict[str, list[tuple[float, float, float]]] = {o: [] for o in options}  # (samples/s, auc, ratio)
    for r in range(args.repeat):
        speed = {}
        for option in options:
            torch.manual_seed(args.seed + r)
            model = build_model(option, fm, args.emb_dim, args.mlp)
            cfg = embedding_optimizer(option, args.lr, args.adagrad_lr)
            out = train_one_epoch(model, cfg, train, test, args.batch_size, seed=args.seed + r)
            speed[option] = args.rows / out["train_s"]
            results[option].append((speed[option], out["auc"], speed[option] / speed.get("adam", np.nan)))
            print(f"  round {r} {option:16s} {speed[option]:9,.0f} samples/s  AUC {out['auc']:.4f}", flush=True)
    base_auc = statistics.median(a for _, a, _ in results["adam"])
    print("\n| option | samples/s | x dense Adam (same round) | test AUC | AUC - dense Adam |")
    print("|---|---:|---:|---:|---:|")
    for option, runs in results.items():
        sps, auc, ratio = (statistics.median(x[i] for x in runs) for i in range(3))
        print(f"| {option} | {sps:,.0f} | {ratio:.2f} | {auc:.4f} | {auc - base_auc:+.4f} |")


if __name__ == "__main__":
    main()
