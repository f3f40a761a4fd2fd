"""Scores one fixed, untrained model on the valid and test splits with ``trainer.validate`` / ``trainer.test`` on
N CPU processes (DDP over gloo when N > 1) and writes the metrics and each rank's scored rows as JSON: run by
``tests/test_train.py::test_ddp_evaluation_is_sharded_and_equals_one_process``.

    python -m tests.ddp_eval <cache_dir> <devices> <out.json>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from ctrlab.data.datamodule import CTRDataModule
from ctrlab.lit.module import CTRModule
from ctrlab.models.deepfm import DeepFM
from tests.helpers import synthetic_source

SOURCE = {"num_rows": 6000, "num_fields": 6, "max_vocab": 40}  # valid 600 rows, test 1200


class RowCounter(pl.Callback):
    """The rows this rank scored, per stage."""

    def __init__(self) -> None:
        self.rows = {"val": 0, "test": 0}

    def on_validation_batch_end(self, trainer: pl.Trainer, module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        self.rows["val"] += len(batch["label"])

    def on_test_batch_end(self, trainer: pl.Trainer, module: Any, outputs: Any, batch: Any, *args: Any) -> None:
        self.rows["test"] += len(batch["label"])


def main(cache_dir: str, devices: int, out: str) -> None:
    dm = CTRDataModule(synthetic_source(**SOURCE), cache_dir, batch_size=256, eval_batch_size=70, seed=0)
    torch.manual_seed(0)  # the same weights on every rank and in every run
    dm.prepare_data()
    dm.setup()
    model = DeepFM(dm.feature_map, 8, 0.1, [16], 0.0, "none")  # init std 0.1: scores spread, few ties
    adam = {"families": {"default": {"_target_": "torch.optim.Adam", "_partial_": True}}}
    counter = RowCounter()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=DDPStrategy(process_group_backend="gloo") if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[counter],
    )
    module = CTRModule(model, adam)
    metrics = trainer.validate(module, datamodule=dm, verbose=False)[0]
    metrics.update(trainer.test(module, datamodule=dm, verbose=False)[0])
    result = {"metrics": {k: float(v) for k, v in metrics.items()}, "rows": counter.rows}
    Path(f"{out}.rank{trainer.global_rank}").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
