"""Inference time as AIM reports it (§4.5, Tables 7-8): seconds to score 200,000 samples in batches of 2,000.

A run asks for it with ``inference_timing: {samples: 200000, batch_size: 2000}`` (AIM's Tables 7-8 set it; both
sizes are checked at the start, ``ctrlab.run_config``): after testing, ``ctrlab.train`` times the trained model's
forward pass over that many rows of the test split (cycled when the split is shorter; batches cut and moved to
the device it trained on before the clock starts), in eval mode under ``torch.inference_mode``, best of ``repeats``,
and writes ``inference_s`` into ``metrics.json``. ``benchmarks/inference.py`` times its models with the same
``forward_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ctrlab.data.cache import SplitArrays
from ctrlab.data.datamodule import BatchLoader
from ctrlab.models.base import CTRModel

Batch = dict[str, torch.Tensor]


def inference_batches(arrays: SplitArrays, samples: int, batch_size: int, device: torch.device) -> list[Batch]:
    """``samples`` rows of ``arrays`` (cycled from its first row when it has fewer) in batches of ``batch_size``
    (the last one shorter when ``batch_size`` does not divide ``samples``), already on ``device``."""
    if not len(arrays):
        raise ValueError("inference_timing: the test split has no rows to time the model on")
    loader = BatchLoader(arrays, batch_size, shuffle=False)  # cuts memory-mapped rows on the host
    rows = np.arange(samples) % len(arrays)  # [samples]
    return [
        {k: v.to(device) for k, v in loader.batch(rows[i : i + batch_size]).items()}
        for i in range(0, samples, batch_size)
    ]


def forward_seconds(
    model: CTRModel, batches: list[Batch], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """The best of ``repeats`` timings of one pass of ``model`` over ``batches`` (eval mode, inference mode, after
    one warm-up batch; on a GPU the clock stops after the device has finished)."""
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if batches[0]["ids"].is_cuda else (lambda: None)
    best = float("inf")
    with torch.inference_mode():
        model(batches[0])  # warm-up: lazy initialisation and kernel selection are not inference
        for _ in range(repeats):
            sync()
            start = clock()
            for batch in batches:
                model(batch)
            sync()
            best = min(best, clock() - start)
    model.train(was_training)
    return best


def inference_seconds(
    model: CTRModel, test: SplitArrays, samples: int, batch_size: int, device: torch.device, repeats: int = 2
) -> float:
    """Wall seconds for ``model`` to score ``samples`` test rows in batches of ``batch_size`` on ``device`` (the
    device it trained on: Lightning moves a model back to the CPU when fitting and testing end); the model is
    returned to where it was."""
    home = next(model.parameters()).device
    model.to(device)
    try:
        return forward_seconds(model, inference_batches(test, samples, batch_size, device), repeats)
    finally:
        model.to(home)
