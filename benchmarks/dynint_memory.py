"""Memory of DynInt's dynamic PIN layers: the paper's computational paradigms (§3.5) against the naive
implementation that materialises the per-instance B×F×F matrices.

    .venv/bin/python benchmarks/dynint_memory.py [--batch 1024] [--dim 16] [--fields 39 200]

For one DGP layer (W^(i) = U Σ^(i) V^T, eqs. 7-8) and one DWP layer (G^(i) ∘ W, eqs. 9-10), fast and naive,
it measures a forward + backward at fixed B, D, K for F = 39 (Criteo) and F = 200 fields:

- saved: bytes that autograd keeps from the forward for the backward (``saved_tensors_hooks``; parameters
  and the input excluded, each storage counted once). Deterministic: the activation memory a layer adds.
- largest: the element count of the largest tensor any op creates during forward + backward
  (a ``TorchDispatchMode`` sees every op's outputs). Deterministic.
- peak RSS: the process's peak resident memory during the forward + backward minus its resident memory just
  before, in a fresh subprocess per case (Linux: the peak is reset through /proc/self/clear_refs and read
  from VmHWM). Real, but allocator-dependent and noisy below a few MB; "n/a" where /proc is missing.

Expected growth: fast DGP ~ B*(K + F)*D, fast DWP ~ B*K*F*D, naive ~ B*F*F. Sub-spaces (h > 1) act as F*h
fields of D/h dims: B*K*F*D is unchanged, B*F*F becomes B*F*F*h*h.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import torch
from measure import LargestTensor

from ctrlab.nn.dynamic import DynamicGeneratedPIN, DynamicWeightedPIN
from ctrlab.utils import machine_summary


class NaiveGeneratedPIN(DynamicGeneratedPIN):
    """DGP with the dense per-instance W^(i) = U diag(σ^(i)) V^T: [B, F, F]."""

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        sigma = self.singular_values(x0)  # [B, K]
        w = torch.einsum("fk,bk,gk->bfg", self.u, sigma, self.v)  # [B, F, F]
        return x * torch.bmm(w, x0) + x


class NaiveWeightedPIN(DynamicWeightedPIN):
    """DWP with the dense per-instance G^(i) = sum_p u_p v_p^T: [B, F, F]."""

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        u, v = self.factors(x0)  # [B, K, F]
        g = torch.einsum("bkf,bkg->bfg", u, v)  # [B, F, F]
        return x * torch.bmm(g * self.weight, x0) + x


LAYERS = {
    "dgp_fast": DynamicGeneratedPIN,
    "dgp_naive": NaiveGeneratedPIN,
    "dwp_fast": DynamicWeightedPIN,
    "dwp_naive": NaiveWeightedPIN,
}


def build(name: str, fields: int, args: argparse.Namespace) -> torch.nn.Module:
    k = args.kernel_size if name.startswith("dgp") else args.rank
    return LAYERS[name](fields, fields * args.dim, k, args.reduction_ratio)


def saved_bytes(layer: torch.nn.Module, x0: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Bytes saved for backward by ``layer(x0, x0)``, parameters and input excluded; also the output."""
    skip = {p.untyped_storage().data_ptr() for p in layer.parameters()} | {x0.untyped_storage().data_ptr()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x0, x0)
    return sum(seen.values()), out


def measure(name: str, fields: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    layer = build(name, fields, args)
    x0 = (torch.randn(args.batch, fields, args.dim) * 0.1).requires_grad_()
    saved, out = saved_bytes(layer, x0)
    out.sum().backward()
    mode = LargestTensor()
    with mode:
        layer(x0, x0).sum().backward()
    return {"saved_MB": saved / 2**20, "largest": mode.largest}


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def peak_rss_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: peak RSS during one forward + backward minus the RSS before it, in MB."""
    torch.manual_seed(0)
    layer = build(args.child, args.child_fields, args)
    x0 = (torch.randn(args.batch, args.child_fields, args.dim) * 0.1).requires_grad_()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the peak RSS) to the current RSS
        before = _status_kib("VmRSS")
    except OSError:
        print(json.dumps({"peak_rss_MB": math.nan}))
        return
    layer(x0, x0).sum().backward()
    print(json.dumps({"peak_rss_MB": (_status_kib("VmHWM") - before) / 1024}))


def peak_rss(name: str, fields: int, args: argparse.Namespace) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--child-fields",
        str(fields),
        "--batch",
        str(args.batch),
        "--dim",
        str(args.dim),
        "--kernel-size",
        str(args.kernel_size),
        "--rank",
        str(args.rank),
        "--reduction-ratio",
        str(args.reduction_ratio),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_MB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--fields", type=int, nargs="+", default=[39, 200])
    parser.add_argument("--kernel-size", type=int, default=64, help="DGP's K (Fig. 6a: best at 64)")
    parser.add_argument("--rank", type=int, default=2, help="DWP's K (DynInt's grid: 1-4)")
    parser.add_argument("--reduction-ratio", type=int, default=8)
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess peak-RSS measurement")
    parser.add_argument("--child", choices=list(LAYERS), help=argparse.SUPPRESS)
    parser.add_argument("--child-fields", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_rss_child(args)
        return

    print(f"machine: {machine_summary()}")
    b, d = args.batch, args.dim
    print(
        f"one layer, forward + backward, float32, B={b}, D={d}, h=1, DGP K={args.kernel_size}, "
        f"DWP K={args.rank}, r={args.reduction_ratio}\n"
    )
    header = f"{'layer':<10} {'F':>4} {'saved MB':>9} {'largest tensor':>15} {'peak RSS MB':>12}  sizes"
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, int], dict] = {}
    for name in LAYERS:
        for f in args.fields:
            r = measure(name, f, args)
            r["peak_rss_MB"] = math.nan if args.no_rss else peak_rss(name, f, args)
            results[name, f] = r
            if name.startswith("dgp"):
                ref = f"B*F*F={b * f * f:,}  B*K*D={b * args.kernel_size * d:,}  B*F*D={b * f * d:,}"
            else:
                ref = f"B*F*F={b * f * f:,}  B*K*F*D={b * args.rank * f * d:,}"
            row = f"{name:<10} {f:>4} {r['saved_MB']:>9.2f} {r['largest']:>15,} {r['peak_rss_MB']:>12.1f}"
            print(f"{row}  {ref}")
    if len(args.fields) >= 2:
        lo, hi = args.fields[0], args.fields[-1]
        print(f"\ngrowth F={lo} -> F={hi}: linear would be x{hi / lo:.1f}, quadratic x{(hi / lo) ** 2:.1f}")
        for name in LAYERS:
            a, z = results[name, lo], results[name, hi]
            growth = [z[key] / a[key] for key in ("saved_MB", "largest", "peak_rss_MB")]
            print(f"  {name:<10} saved x{growth[0]:.1f}   largest x{growth[1]:.1f}   peak RSS x{growth[2]:.1f}")


if __name__ == "__main__":
    main()
