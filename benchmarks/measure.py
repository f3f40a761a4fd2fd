"""What the benchmarks measure with: the clock on a machine that other processes share, the machine line, and the
largest tensor an op makes (benchmarks/README.md)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def setup_clock(wall: bool) -> Callable[[], float]:
    """The clock to time with: wall time at torch's default threads (``--wall``), or one torch thread timed by its
    own CPU time, so that what other processes on a shared machine take is not counted."""
    if wall:
        return time.perf_counter
    torch.set_num_threads(1)
    return time.thread_time


def machine_line(wall: bool) -> str:
    """The machine, torch, its threads, the clock and the load: printed first by every timed benchmark."""
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {'wall' if wall else 'thread CPU'} time; "
        f"load average {open('/proc/loadavg').read().split()[:3]}"
    )


class LargestTensor(TorchDispatchMode):
    """Records the largest element count among the outputs of every op run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 — dispatch protocol
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out
