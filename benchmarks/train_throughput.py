"""Training throughput: ctrlab's Lightning path vs a bare PyTorch loop, same model and tensors, one run.

DeepFM (embedding 16, MLP 400-400-400, Adam) for one epoch over 500k synthetic Criteo-shaped rows, batch
4096. Each path runs ``--repeats`` times, alternating, and the best epoch of each is compared (the machine's
other load only ever slows a run down). Target: ctrlab >= 0.9x the bare loop. (Preprocessing speed:
benchmarks/preprocess.py.)

    .venv/bin/python benchmarks/train_throughput.py [--rows 500000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ctrlab.data.datamodule import BatchLoader, CTRDataModule
from ctrlab.lit.callbacks import TrainingThroughput
from ctrlab.lit.module import CTRModule
from ctrlab.utils import machine_summary

ROOT = Path(__file__).resolve().parents[1]


def bare_epoch(model: torch.nn.Module, loader: BatchLoader) -> float:
    """The reference: the plainest correct training loop over the same batches. Returns samples/s."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    model.train()
    seen, start = 0, time.perf_counter()
    for batch in loader:
        loss = F.binary_cross_entropy_with_logits(model(batch), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(batch["label"])
    return seen / (time.perf_counter() - start)


def lightning_epoch(model: torch.nn.Module, datamodule: CTRDataModule, optimizer_cfg) -> float:
    """ctrlab's path: CTRModule + Trainer + CTRDataModule (no validation, no checkpoint). Returns samples/s."""
    monitor = TrainingThroughput()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
        num_sanity_val_steps=0,
    )
    trainer.fit(CTRModule(model, optimizer_cfg), datamodule=datamodule)
    return monitor.samples_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000, help="training rows")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {machine_summary()} | pytorch-lightning {pl.__version__}")

    total = int(args.rows / 0.98) + 1  # 98% train, so that the train split has --rows rows
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "model=deepfm",
                "data=synthetic_criteo",
                f"data.num_rows={total}",
                "data.source.split=[0.98,0.01,0.01]",
            ],
        )
    with tempfile.TemporaryDirectory() as tmp:
        dm = CTRDataModule(instantiate(cfg.data.source), tmp, cfg.data.batch_size, cfg.data.eval_batch_size, seed=0)
        dm.prepare_data()
        dm.setup()
        print(
            f"data: {dm.feature_map.description}; train rows {dm.feature_map.split_sizes['train']:,}; "
            f"batch {cfg.data.batch_size}; model {cfg.model._target_} {list(cfg.model.mlp_hidden)}"
        )
        results: dict[str, list[float]] = {"bare": [], "ctrlab": []}
        for r in range(args.repeats):
            for path in ("bare", "ctrlab"):
                pl.seed_everything(r, verbose=False)
                model = instantiate(cfg.model, _partial_=True)(feature_map=dm.feature_map)
                if path == "bare":
                    sps = bare_epoch(model, BatchLoader(dm.splits["train"], cfg.data.batch_size, True, seed=r))
                else:
                    sps = lightning_epoch(model, dm, cfg.optimizer)
                results[path].append(sps)
                print(f"  repeat {r} {path:7s} {sps:10,.0f} samples/s")
    bare, ours = max(results["bare"]), max(results["ctrlab"])
    print(f"bare PyTorch loop : {bare:10,.0f} samples/s (best of {args.repeats})")
    print(f"ctrlab (Lightning): {ours:10,.0f} samples/s (best of {args.repeats})")
    print(f"ratio ctrlab/bare : {ours / bare:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
