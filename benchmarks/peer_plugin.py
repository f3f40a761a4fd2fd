"""ctrlab's plugin for the peer benchmark harness (``../shared/bench/peer_bench.py``): DeepFM through ctrlab's own
training path (CTRModule + Trainer + BatchLoader) on the harness's arrays, in the same sweep as FuxiCTR,
DeepCTR-Torch and the hand-written loops.

    make benchmark-peers        # builds .venv-peers with the harness's setup_venv.sh, runs the sweep

or by hand, from the repository root, with a venv that has the peers and ctrlab (``pip install --no-deps -e .``):

    CTRLAB_OPTIMIZER=adam_sparse <venv>/bin/python ../shared/bench/peer_bench.py --threads 1 --repeat 2 \\
        --runs torch_deepfm,torch_deepfm_fusedadam,fuxictr_deepfm,deepctr_deepfm \\
        --plugin benchmarks/peer_plugin.py:run:ctrlab:DeepFM

Contract (the harness's README): ``run(args, X, y, sizes)`` trains one epoch on ``X[:args.rows]`` (int64 per-field
ids 0..sizes[f]-1) with ``args.batch_size``, ``args.lr``, ``args.emb_dim``, ``args.mlp`` and returns
``{"train_s", "auc"}``. The optimizer is ``configs/optimizer/<CTRLAB_OPTIMIZER>.yaml`` (default ``adam_sparse``,
ctrlab's fastest at dense Adam's AUC, benchmarks/README.md) with its learning rate set to ``args.lr``; the
Trainer's precision is ``CTRLAB_PRECISION`` (default ``32-true``; ``bf16-mixed`` runs the matmuls in bfloat16, and
the test predictions are then made under the same autocast).
``benchmarks/sparse_embedding.py`` reuses ``harness_splits`` and ``train_one_epoch``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def harness_splits(X: np.ndarray, y: np.ndarray, sizes: np.ndarray, rows: int):
    """The harness's arrays as ctrlab's feature map and train / test splits. Ids shift by one so that ctrlab's
    id 0 (padding / out-of-vocabulary) stays unused, as in its own caches."""
    from ctrlab.data.cache import SplitArrays
    from ctrlab.data.schema import FeatureMap, Field

    fm = FeatureMap(
        dataset="peer_bench",
        fields=[Field(f"C{i}", int(s) + 1) for i, s in enumerate(sizes)],
        split_sizes={"train": rows, "valid": 0, "test": len(y) - rows},
    )
    ids = (X + 1).astype(np.int32)
    labels = y.astype(np.float32)
    return fm, SplitArrays(ids[:rows], labels[:rows]), SplitArrays(ids[rows:], labels[rows:])


def optimizer_config(name: str, lr: float) -> dict:
    """``configs/optimizer/<name>.yaml`` with ``default``'s learning rate (which the other families interpolate)
    set to lr."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"optimizer": OmegaConf.load(ROOT / "configs" / "optimizer" / f"{name}.yaml")})
    cfg.optimizer.families.default.lr = lr
    return OmegaConf.to_container(cfg.optimizer, resolve=True)


def train_one_epoch(
    model, optimizer: dict, train, test, batch_size: int, seed: int = 0, precision: str = "32-true"
) -> dict:
    """One epoch of ctrlab's path (CTRModule + Trainer + BatchLoader, no validation, no checkpoint), then the test
    AUC, both at ``precision`` (a Lightning precision: 32-true | bf16-mixed). Returns {"train_s", "auc"}; train_s is
    the Trainer's fit alone."""
    import pytorch_lightning as pl
    import torch
    from torchmetrics.functional.classification import binary_auroc

    from ctrlab.data.datamodule import BatchLoader
    from ctrlab.lit.module import CTRModule

    class Data(pl.LightningDataModule):
        def train_dataloader(self) -> BatchLoader:
            return BatchLoader(train, batch_size, shuffle=True, seed=seed)

    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, precision=precision,
    )  # fmt: skip
    module = CTRModule(model, optimizer)
    start = time.perf_counter()
    trainer.fit(module, datamodule=Data())
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
        preds = torch.cat([torch.sigmoid(model(b).float()) for b in BatchLoader(test, 16384, shuffle=False)])
    return {"train_s": train_s, "auc": binary_auroc(preds, torch.from_numpy(test.labels).long()).item()}


def run(args, X: np.ndarray, y: np.ndarray, sizes: np.ndarray) -> dict:
    """The harness's entry point: DeepFM (embedding args.emb_dim, MLP args.mlp, init N(0, 1e-4²) as the
    harness's loops) with the optimizer named by CTRLAB_OPTIMIZER, at the precision CTRLAB_PRECISION."""
    import torch

    from ctrlab.models.deepfm import DeepFM

    torch.manual_seed(args.seed)
    fm, train, test = harness_splits(X, y, sizes, args.rows)
    model = DeepFM(fm, args.emb_dim, 1e-4, list(args.mlp), 0.0, "none")
    name = os.environ.get("CTRLAB_OPTIMIZER", "adam_sparse")
    precision = os.environ.get("CTRLAB_PRECISION", "32-true")
    optimizer = optimizer_config(name, args.lr)
    result = train_one_epoch(model, optimizer, train, test, args.batch_size, seed=args.seed, precision=precision)
    return {**result, "optimizer": name, "precision": precision}
