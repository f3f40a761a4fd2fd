"""Training throughput of DIN and sDPN on the behaviour-sequence stand-in: a bare loop of Adam steps over the
cached train split (batch 1024), best of ``--repeats`` passes (the machine's other load only slows a pass down).

    .venv/bin/python benchmarks/sequence_throughput.py [--rows 20000] [--repeats 2] [--models din,sdpn]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ctrlab.data.datamodule import BatchLoader, CTRDataModule
from ctrlab.lit.module import training_loss
from ctrlab.utils import machine_summary

ROOT = Path(__file__).resolve().parents[1]


def samples_per_s(model_name: str, rows: int, repeats: int, cache: str) -> float:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=synthetic_sequence", f"data.num_rows={rows}", f"model={model_name}"])
    data = CTRDataModule(instantiate(cfg.data.source), cache, cfg.data.batch_size, cfg.data.eval_batch_size, 0)
    data.prepare_data()
    data.setup()
    torch.manual_seed(0)
    model = instantiate(cfg.model, _partial_=True)(feature_map=data.feature_map)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = BatchLoader(data.splits["train"], cfg.data.batch_size, shuffle=True)
    best = 0.0
    for epoch in range(repeats):
        loader.set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        for batch in loader:
            bce, terms = training_loss(model, batch)
            optimizer.zero_grad()
            (bce + sum(terms.values())).backward()
            optimizer.step()
            seen += len(batch["label"])
        best = max(best, seen / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="stand-in rows (70% train)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default="din,sdpn")
    args = parser.parse_args()
    print(machine_summary())
    with tempfile.TemporaryDirectory() as cache:
        for name in args.models.split(","):
            print(f"{name}: {samples_per_s(name, args.rows, args.repeats, cache):,.0f} samples/s")


if __name__ == "__main__":
    main()
