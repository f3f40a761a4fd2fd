"""The benchmark scripts that must keep working where no GPU is lent: they run here at a tiny size."""

from __future__ import annotations

import importlib.util

from tests.helpers import ROOT


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_throughput_trains_an_epoch_in_every_cpu_mode():
    import torch

    bench = load_script("gpu_throughput")
    vocab = bench.peer_vocab_sizes()
    assert len(vocab) == 39 and vocab[0] == 10 and 1.0e6 < sum(vocab) < 1.3e6  # the peer set's ~1M ids
    arrays = bench.peer_arrays(1024, vocab)
    for mode in ("host", "device"):
        assert bench.throughput("deepfm", arrays, vocab, 512, mode, torch.device("cpu")) > 0
