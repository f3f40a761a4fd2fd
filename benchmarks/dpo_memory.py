"""Memory and time of DPN's feature-based DPO (``ctrlab.nn.dpo``): the contraction each generator runs against the
materialised form that builds the per-instance weight W(z) [B, c, m] and multiplies it in.

    .venv/bin/python benchmarks/dpo_memory.py [--batch 1024] [--in-dim 200] [--out-dim 400] [--kernels 4]

For each generator (HyperDense, MoK, MoK with 2 heads, MD with r = 32), both forms, one forward + backward with
context z = x (x0 of 20 fields x 10 dims by default, a first DPN layer of 400 units):

- largest: the element count of the largest tensor any op creates (a ``TorchDispatchMode`` sees every output).
- saved MB: bytes autograd keeps from the forward for the backward (parameters and the input excluded).
- peak RSS MB: peak resident memory during the step minus the resident memory before it (Linux: VmHWM reset
  through /proc/self/clear_refs); allocator-dependent, "nan" where /proc is missing.
- ms: the step's wall time, best of 3.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from measure import LargestTensor

from ctrlab.nn.dpo import GeneratorSpec, weight_generator
from ctrlab.utils import machine_summary

SPECS = {
    "hyperdense": lambda k: GeneratorSpec("hyperdense"),
    "mok": lambda k: GeneratorSpec("mok", kernels=k, sigma="softmax", heads=1),
    "mok_h2": lambda k: GeneratorSpec("mok", kernels=k, sigma="softmax", heads=2),
    "md_r32": lambda k: GeneratorSpec("md", kernels=k, sigma="softmax", rank=32),
}


def step(gen: torch.nn.Module, x: torch.Tensor, materialise: bool) -> torch.Tensor:
    code = gen.code(x)  # context z = x
    if materialise:
        w, b = gen.weights(code)  # [B, c, m], [B, c]
        y = torch.bmm(w, x.unsqueeze(-1)).squeeze(-1) + b
    else:
        y = gen.transform(x, code)  # [B, c]
    y.sum().backward()
    return y


def saved_mb(gen: torch.nn.Module, x: torch.Tensor, materialise: bool) -> float:
    skip = {p.untyped_storage().data_ptr() for p in gen.parameters()} | {x.untyped_storage().data_ptr()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in skip:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(gen, x, materialise)
    return sum(seen.values()) / 2**20


def peak_rss_mb(gen: torch.nn.Module, x: torch.Tensor, materialise: bool) -> float:
    def kib(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        before = kib("VmRSS")
    except OSError:
        return math.nan
    step(gen, x, materialise)
    return (kib("VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--in-dim", type=int, default=200, help="m = n (x0 of 20 fields x 10)")
    parser.add_argument("--out-dim", type=int, default=400, help="c (DPN's 400-unit layers)")
    parser.add_argument("--kernels", type=int, default=4, help="l (Table 2a)")
    args = parser.parse_args()
    b, m, c = args.batch, args.in_dim, args.out_dim
    print(f"machine: {machine_summary()}")
    print(f"one feature-based DPO, forward + backward, float32, B={b}, m=n={m}, c={c}, l={args.kernels}")
    print(f"materialised W(z): B*c*m = {b * c * m:,} elements\n")
    header = f"{'generator':<11} {'form':<13} {'largest tensor':>15} {'saved MB':>9} {'peak RSS MB':>12} {'ms':>8}"
    print(header)
    print("-" * len(header))
    for name, make in SPECS.items():
        for materialise in (False, True):
            torch.manual_seed(0)
            gen = weight_generator(make(args.kernels), m, c, m)
            x = torch.randn(b, m).requires_grad_()
            mode = LargestTensor()
            with mode:
                step(gen, x, materialise)
            saved = saved_mb(gen, x, materialise)
            rss = peak_rss_mb(gen, x, materialise)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                step(gen, x, materialise)
                times.append((time.perf_counter() - start) * 1e3)
            form = "materialised" if materialise else "contraction"
            print(f"{name:<11} {form:<13} {mode.largest:>15,} {saved:>9.1f} {rss:>12.1f} {min(times):>8.1f}")


if __name__ == "__main__":
    main()
