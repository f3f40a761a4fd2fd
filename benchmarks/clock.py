"""How the CPU benchmarks time a step on a machine that other processes share (benchmarks/README.md)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch


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
