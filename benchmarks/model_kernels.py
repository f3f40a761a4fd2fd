"""Forward + backward time of the heavy interaction blocks and of their models on the Criteo stand-in's shape.

Timed by default on one torch thread by that thread's CPU time (``time.thread_time``), so that other processes on
a shared machine do not enter the figures (``--wall``: wall time on torch's default threads). The compile time
is wall time.

Part 1, the rewritten blocks: each block's previous forward (kept below as ``*_before``, on the same module's
weights) against the current one, alternating, same input, best of ``--repeats``; the two outputs are checked
to agree first. Part 2, whole models (configs/model/<name>.yaml as shipped) at the same shape: ms per batch,
and with ``--compile`` also under ``torch.compile`` (inductor; its compile time printed apart).

    PYTHONPATH=src .venv/bin/python benchmarks/model_kernels.py [--batch 1024] [--repeats 3] [--compile xdeepfm]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from measure import machine_line, setup_clock
from omegaconf import OmegaConf

from ctrlab.data.schema import FeatureMap, Field
from ctrlab.lit.module import build_model, training_loss
from ctrlab.nn.bilinear import BilinearInteraction
from ctrlab.nn.cin import CIN
from ctrlab.nn.self_attention import InteractingLayer

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
MODELS = ["deepfm", "dcn_v2", "xdeepfm", "fibinet", "autoint_plus", "xdeepint", "dynint_da", "dynint_dgp", "dynint_dwp"]


def cin_before(cin: CIN, x0: torch.Tensor) -> torch.Tensor:
    """CIN as it was: every layer's maps built (eq. 6), then pooled (eq. 7)."""
    x, pooled, last = x0, [], len(cin.weights) - 1
    for k, w in enumerate(cin.weights):
        x = w @ (x.unsqueeze(2) * x0.unsqueeze(1)).flatten(1, 2)  # [B, H_k, D]
        direct = x
        if cin.split_half and k < last:
            x, direct = x.chunk(2, dim=1)
        pooled.append(direct.sum(dim=-1))
    return torch.cat(pooled, dim=1)


def bilinear_before(layer: BilinearInteraction, v: torch.Tensor) -> torch.Tensor:
    """Bilinear as it was: the pair's W gathered per pair, one product per pair for every type."""
    if layer.per_pair:
        w = layer.weight  # [P, D, D]
    else:  # field_all: W_0 for every pair; field_each: W of the pair's first field
        w = layer.weight.index_select(0, layer.rows if len(layer.weight) > 1 else torch.zeros_like(layer.rows))
    v_i, v_j = v.index_select(1, layer.rows), v.index_select(1, layer.cols)
    return torch.einsum("bpd,pde->bpe", v_i, w) * v_j


def attention_before(layer: InteractingLayer, e: torch.Tensor) -> torch.Tensor:
    """The interacting layer as it was: softmax(q k^T) stored, then multiplied into v."""
    act = layer.projection_activation
    q, k, v = (layer._heads(act(proj(e))) for proj in (layer.query, layer.key, layer.value))
    alpha = torch.softmax(layer.scale * (q @ k.transpose(-1, -2)), dim=-1)
    out = (alpha @ v).transpose(1, 2).flatten(2)
    if layer.residual is not None:
        out = out + act(layer.residual(e))
    return layer.norm(torch.relu(out))


@contextmanager
def previous_kernels() -> Iterator[None]:
    """The blocks' previous forwards in place of the current ones, for a whole model's "before"."""
    blocks = (CIN, BilinearInteraction, InteractingLayer)
    saved = [b.forward for b in blocks]
    for block, before in zip(blocks, (cin_before, bilinear_before, attention_before), strict=True):
        block.forward = before
    try:
        yield
    finally:
        for block, forward in zip(blocks, saved, strict=True):
            block.forward = forward


CLOCK = time.thread_time  # main() switches to wall time with --wall


def step_ms(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    """Best of ``repeats`` forward + backward of ``fn``'s scalar output, in ms of ``CLOCK`` (after one warm-up)."""
    fn().backward()
    best = float("inf")
    for _ in range(repeats):
        start = CLOCK()
        fn().backward()
        best = min(best, CLOCK() - start)
    return best * 1000


def blocks(batch: int, fields: int, dim: int, repeats: int) -> None:
    torch.manual_seed(0)
    emb = (torch.randn(batch, fields, dim) * 0.1).requires_grad_()
    cases = [
        ("CIN [128, 128, 128]", CIN(fields, [128, 128, 128], False), cin_before),
        ("CIN [128, 128, 128], split half", CIN(fields, [128, 128, 128], True), cin_before),
        ("CIN [64, 64] (DynInt Table 1 at scale=default)", CIN(fields, [64, 64], False), cin_before),
        ("bilinear field_all", BilinearInteraction(fields, dim, "field_all"), bilinear_before),
        ("bilinear field_each", BilinearInteraction(fields, dim, "field_each"), bilinear_before),
        ("bilinear field_interaction", BilinearInteraction(fields, dim, "field_interaction"), bilinear_before),
        ("interacting layer, paper", InteractingLayer(dim, 32, 2, True, "paper"), attention_before),
        ("interacting layer, authors_code", InteractingLayer(dim, 32, 2, True, "authors_code"), attention_before),
    ]
    print(f"\n| block (B = {batch}, F = {fields}, D = {dim}) | before ms | after ms | before / after |")
    print("|---|---:|---:|---:|")
    for name, block, before in cases:
        torch.testing.assert_close(block(emb), before(block, emb), rtol=1e-4, atol=1e-5)
        times = {"before": [], "after": []}
        for _ in range(repeats):  # alternate, so that load on the machine hits both alike
            times["before"].append(step_ms(lambda b=block, f=before: f(b, emb).square().mean(), 1))
            times["after"].append(step_ms(lambda b=block: b(emb).square().mean(), 1))
        old, new = min(times["before"]), min(times["after"])
        print(f"| {name} | {old:.1f} | {new:.1f} | {old / new:.2f}x |", flush=True)


def models(batch: int, fields: int, dim: int, repeats: int, compiled: list[str]) -> None:
    fm = FeatureMap("criteo_shape", [Field(f"f{i}", 20) for i in range(fields)], {"train": batch})
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (batch, fields), generator=g)
    data = {"ids": ids, "label": (torch.rand(batch, generator=g) < 0.25).float()}
    print(f"\n| model (B = {batch}, F = {fields}, configs/model) | before ms | after ms | before / after "
          "| compiled ms | compile s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name in MODELS:
        cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
        cfg.pop("defaults", None)
        cfg.embedding_dim = dim
        torch.manual_seed(0)
        model = build_model(cfg, fm)
        times = {"before": [], "after": []}
        for _ in range(repeats):  # alternate, so that load on the machine hits both alike
            with previous_kernels():
                times["before"].append(step_ms(lambda m=model: training_loss(m, data)[0], 1))
            times["after"].append(step_ms(lambda m=model: training_loss(m, data)[0], 1))
        old, new = min(times["before"]), min(times["after"])
        extra = "— | —"
        if name in compiled:
            model.compile()  # in place: the state dict keeps its keys
            start = time.perf_counter()
            step_ms(lambda m=model: training_loss(m, data)[0], 0)
            compile_s = time.perf_counter() - start
            extra = f"{step_ms(lambda m=model: training_loss(m, data)[0], repeats):.1f} | {compile_s:.0f}"
        print(f"| {name} | {old:.1f} | {new:.1f} | {old / new:.2f}x | {extra} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024, help="the default scale's batch (DynInt: 4096)")
    parser.add_argument("--fields", type=int, default=39)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", nargs="*", default=[], choices=MODELS, help="models also timed compiled")
    parser.add_argument("--skip-blocks", action="store_true")
    parser.add_argument("--wall", action="store_true", help="wall time, torch's default threads")
    args = parser.parse_args()
    global CLOCK
    CLOCK = setup_clock(args.wall)
    print(machine_line(args.wall))
    if not args.skip_blocks:
        blocks(args.batch, args.fields, args.dim, args.repeats)
    models(args.batch, args.fields, args.dim, args.repeats, args.compile)


if __name__ == "__main__":
    main()
