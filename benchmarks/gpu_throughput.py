"""Training samples/s of DeepFM, DCN V2 and xDeepInt on the peer set's shape, per ``data.resident`` mode.

The peer set (``../shared/bench/peer_bench.py``): 39 fields whose vocabularies grow log-spaced from 10 to ~104k
ids (~1.2M embedding rows in all). Random ids and labels of that shape (speed does not depend on what is learnt),
one epoch of ``CTRModule`` + ``Trainer`` (the path ``ctrlab.train`` runs; fused Adam as configs/optimizer/adam.yaml)
for each model and each mode: ``host`` (batches cut from numpy, copied per batch), ``device`` (the split on the
device, batches cut there), and on a GPU ``pinned``. It runs on CPU too (``--rows`` small), where ``device``
means torch tensors in RAM.

    PYTHONPATH=src .venv/bin/python benchmarks/gpu_throughput.py [--rows 2000000] [--batch 4096 32768]
"""

from __future__ import annotations

import argparse
import platform
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from ctrlab.data.cache import SplitArrays
from ctrlab.data.datamodule import BatchLoader, resident_split
from ctrlab.data.schema import FeatureMap, Field
from ctrlab.lit.callbacks import TrainingThroughput
from ctrlab.lit.module import CTRModule, build_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["deepfm", "dcn_v2", "xdeepint"]
FUSED_ADAM = {"families": {"default": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "fused": True}}}


def peer_vocab_sizes(fields: int = 39, nominal: int = 500_000, kept: int = 104_000) -> list[int]:
    """The peer harness's nominal id ranges (``vocab_sizes``: log-spaced 10 ... 500k, skewed towards small fields)
    capped at the ~104k distinct ids its largest field keeps: ~1.2M embedding rows (the harness: ~0.95M)."""
    i = np.arange(fields) / (fields - 1)
    return np.minimum(np.round(10 * (nominal / 10) ** (i**0.8)), kept).astype(int).tolist()


def peer_arrays(rows: int, vocab: list[int], seed: int = 0) -> SplitArrays:
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.integers(0, v, rows, dtype=np.int32) for v in vocab], axis=1)  # [N, F]
    return SplitArrays(ids=ids, labels=(rng.random(rows) < 0.25).astype(np.float32))


def throughput(model_name: str, arrays: SplitArrays, vocab: list[int], batch: int, resident: str,
               device: torch.device) -> float:  # fmt: skip
    """Training samples/s of one epoch over ``arrays`` with the split served as ``resident`` says."""
    fm = FeatureMap("peer_shape", [Field(f"f{i}", v) for i, v in enumerate(vocab)], {"train": len(arrays)})
    cfg = OmegaConf.load(ROOT / "configs" / "model" / f"{model_name}.yaml")
    cfg.pop("defaults", None)
    torch.manual_seed(0)
    module = CTRModule(build_model(cfg, fm), FUSED_ADAM)
    split = arrays if resident == "host" else resident_split(arrays, resident, device)
    loader = BatchLoader(split, batch, shuffle=True, seed=0, device=device)
    meter = TrainingThroughput()
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[meter],
    )
    trainer.fit(module, train_dataloaders=loader)
    return meter.samples_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[4096])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"{platform.platform()}, {name}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    warnings.filterwarnings("ignore")  # Lightning's advice on workers, not about speed
    vocab = peer_vocab_sizes()
    arrays = peer_arrays(args.rows, vocab)
    modes = ["host", "device", "pinned"] if device.type == "cuda" else ["host", "device"]
    print(f"\n{args.rows:,} rows, 39 fields, {sum(vocab):,} ids; one epoch each; samples/s")
    print("| model | batch | " + " | ".join(modes) + " | device / host |")
    print("|---|---:|" + "---:|" * (len(modes) + 1))
    for model_name in args.models:
        for batch in args.batch:
            rates = {m: throughput(model_name, arrays, vocab, batch, m, device) for m in modes}
            cells = " | ".join(f"{rates[m]:,.0f}" for m in modes)
            print(f"| {model_name} | {batch:,} | {cells} | {rates['device'] / rates['host']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
