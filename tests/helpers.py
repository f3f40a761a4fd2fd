"""Helpers shared by the tests: small synthetic datasets, random batches, a plain training loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torchmetrics.functional.classification import binary_auroc

from ctrlab.data.cache import SplitArrays
from ctrlab.data.datamodule import BatchLoader
from ctrlab.data.schema import FeatureMap
from ctrlab.data.synthetic import SyntheticSource
from ctrlab.lit.module import training_loss
from ctrlab.models.base import CTRModel

ROOT = Path(__file__).resolve().parents[1]
# a reproduce-* make target's command: its experiment and its data columns (``make_dry_run``)
REPRODUCE = r"-m ctrlab\.reproduce (\S+) --scale smoke --data (\S+)"
SHARED_DATA = ROOT.parent / "shared" / "data"


def synthetic_source(**overrides) -> SyntheticSource:
    """A small synthetic dataset whose planted interactions are strong enough to learn in seconds."""
    cfg = dict(
        name="test_synthetic",
        num_rows=50_000,
        num_fields=16,
        min_vocab=8,
        max_vocab=100,
        zipf_alpha=1.05,
        num_pairs=8,
        num_triples=4,
        latent_dim=4,
        first_order_std=0.5,
        pair_std=1.5,
        triple_std=0.0,
        ctr=0.25,
        split=[0.7, 0.1, 0.2],
        min_count=5,
        seed=0,
    )
    cfg.update(overrides)
    return SyntheticSource(**cfg)


def random_batch(fm: FeatureMap, batch_size: int = 32, seed: int = 0, values: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(0, v, (batch_size,), generator=g) for v in fm.vocab_sizes], dim=1)
    batch = {"ids": ids, "label": torch.randint(0, 2, (batch_size,), generator=g).float()}
    if values:
        batch["values"] = torch.rand(batch_size, fm.num_fields, generator=g)
    return batch


def train_epochs(
    model: CTRModel,
    splits: dict[str, SplitArrays],
    optimizers: list[torch.optim.Optimizer],
    epochs: int,
    batch_size: int = 512,
    seed: int = 0,
) -> Iterator[int]:
    """Joint training in a plain loop, as ``CTRModule`` does it: every optimizer steps on each training batch's
    loss (BCE + the model's regularization terms). Yields each finished epoch's number, so a caller can score or
    ``derive()`` between epochs."""
    train = BatchLoader(splits["train"], batch_size, shuffle=True, seed=seed)
    for epoch in range(epochs):
        model.train()
        train.set_epoch(epoch)
        for batch in train:
            bce, terms = training_loss(model, batch)
            loss = bce + sum(terms.values())
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            for opt in optimizers:
                opt.step()
        yield epoch


def fit_and_auc(
    model: CTRModel,
    splits: dict[str, SplitArrays],
    epochs: int = 6,
    lr: float = 3e-3,
    batch_size: int = 512,
    seed: int = 0,
    optimizers: list[torch.optim.Optimizer] | None = None,
) -> float:
    """Train in a plain loop (``train_epochs``; Adam at ``lr`` unless ``optimizers`` are given); return the best
    test AUC over epochs (fixed seeds)."""
    torch.manual_seed(seed)
    optimizers = optimizers or [torch.optim.Adam(model.parameters(), lr=lr)]
    test = BatchLoader(splits["test"], len(splits["test"]), shuffle=False).batch(slice(None))
    best = 0.0
    for _ in train_epochs(model, splits, optimizers, epochs, batch_size, seed):
        model.eval()
        with torch.no_grad():
            best = max(best, binary_auroc(torch.sigmoid(model(test)), test["label"].long()).item())
    return best


def run_module(
    module: str, *args: str, env: dict[str, str | None] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` from the repository root, as a user runs it, its output captured; ``env``
    sets variables over this process's (None removes one)."""
    merged = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=merged, capture_output=True, text=True, timeout=timeout
    )


def make_dry_run(target: str, *variables: str) -> str:
    """What ``make -n <target> <variables>`` would run (the environment's install step and interpreter blanked)."""
    done = subprocess.run(["make", "-n", target, "STAMP=", "PY=py", *variables], cwd=ROOT, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout


def train_cli(tmp_path: Path, *overrides: str) -> dict:
    """Run ``python -m ctrlab.train`` as a user would (one thread, CSV log, run and cache under
    ``tmp_path``); assert it succeeded and return its ``metrics.json``."""
    out = tmp_path / "run"
    args = [*overrides, "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=csv",
            f"paths.output_dir={out}", f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    done = run_module("ctrlab.train", *args, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())
