"""Optimizers for the sparse gradient of an embedding table (``nn.Embedding(sparse=True)``), whose work scales with
the batch's rows instead of the table: a lazy Adam and a row-wise Adagrad. ``optimizer.sparse_embedding=true``
gives the ``embedding`` family sparse gradients (``lit/module.py``); ``check_sparse_embedding`` says up front
when that switch and the family's optimizer do not fit together.

A sparse gradient lists the looked-up rows with repeats (one entry per lookup); ``coalesce()`` sums the
repeats, so each touched row r gets its summed gradient g_r [D], exactly the row of the dense gradient.

LazyAdam (TensorFlow Addons' LazyAdam; ``torch.optim.SparseAdam`` is the same idea): Adam (Kingma & Ba 2015,
Algorithm 1, in torch.optim.Adam's form) applied to the touched rows only,

    m_r ← β1 m_r + (1 - β1) g_r
    v_r ← β2 v_r + (1 - β2) g_r²
    w_r ← w_r - lr / (1 - β1^t) · m_r / (sqrt(v_r) / sqrt(1 - β2^t) + ε)

with t the optimizer's step count (one clock for the whole table, as SparseAdam and TF). Untouched rows keep
w, m and v; dense Adam would decay their moments and keep moving them. Differences from SparseAdam: ε sits
where torch.optim.Adam puts it (SparseAdam: sqrt(v) + ε, then the bias correction), so a row touched every
step follows dense Adam exactly; and the rows are gathered and scattered with index_select / index_copy_
instead of sparse-tensor arithmetic.

RowWiseAdagrad (FBGEMM's EXACT_ROWWISE_ADAGRAD, the DLRM embedding optimizer): one accumulator per row,
the mean squared gradient over the row's D coordinates,

    G_r ← G_r + mean_d(g_rd²)
    w_r ← w_r - lr · g_r / (sqrt(G_r) + ε)

so its state is [V] instead of Adam's 2 x [V, D].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer

from ctrlab.optim.ftrl import FTRL


def _touched_rows(p: torch.Tensor, optimizer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The touched rows of ``p``'s sparse gradient and their summed gradients: ([R], [R, D])."""
    if not p.grad.is_sparse:
        raise RuntimeError(
            f"{optimizer} needs the sparse gradient of an embedding table; got a dense gradient for a parameter "
            f"of shape {list(p.shape)}: set optimizer.sparse_embedding=true and give {optimizer} only the "
            "`embedding` family"
        )
    grad = p.grad.coalesce()
    return grad.indices()[0], grad.values()


class LazyAdam(Optimizer):
    """Adam on the touched rows of a sparse gradient only (module docstring). Arguments as torch.optim.Adam."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0 or eps < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"LazyAdam needs lr > 0, eps >= 0, 0 <= betas < 1; got lr={lr}, eps={eps}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows, g = _touched_rows(p, "LazyAdam")  # [R], [R, D]
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m = state["exp_avg"].index_select(0, rows).lerp_(g, 1.0 - beta1)  # [R, D]
                v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                denom = v.sqrt_().div_(math.sqrt(1.0 - beta2**t)).add_(group["eps"])
                p.index_add_(0, rows, m.div_(denom), alpha=-group["lr"] / (1.0 - beta1**t))
        return loss


class RowWiseAdagrad(Optimizer):
    """Adagrad with one accumulator per row, on the touched rows of a sparse gradient (module docstring).

    Args:
        lr: the step size.
        eps: added to sqrt(G_r).
        initial_accumulator_value: G_r at the start.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-2,
        eps: float = 1e-8,
        initial_accumulator_value: float = 0.0,
    ) -> None:
        if lr <= 0 or eps < 0 or initial_accumulator_value < 0:
            raise ValueError(
                "RowWiseAdagrad needs lr > 0, eps >= 0, initial_accumulator_value >= 0; got "
                f"lr={lr}, eps={eps}, initial_accumulator_value={initial_accumulator_value}"
            )
        super().__init__(params, dict(lr=lr, eps=eps, initial_accumulator_value=initial_accumulator_value))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows, g = _touched_rows(p, "RowWiseAdagrad")  # [R], [R, D]
                g = g.reshape(len(rows), -1)
                state = self.state[p]
                if not state:
                    state["sum"] = torch.full((p.shape[0],), group["initial_accumulator_value"], dtype=p.dtype)
                acc = state["sum"].index_select(0, rows).add_(g.pow(2).mean(dim=1))  # [R]
                state["sum"].index_copy_(0, rows, acc)
                step = g / (acc.sqrt_().add_(group["eps"])).unsqueeze(1)  # [R, D]
                p.index_add_(0, rows, step.view(len(rows), *p.shape[1:]), alpha=-group["lr"])
        return loss


# the optimizers that take only sparse gradients, and those that take either (torch's Adagrad and SGD; FTRL and
# G-FTRL, exactly: ctrlab/optim/ftrl.py)
SPARSE_ONLY = (torch.optim.SparseAdam, LazyAdam, RowWiseAdagrad)
SPARSE_CAPABLE = (*SPARSE_ONLY, torch.optim.Adagrad, torch.optim.SGD, FTRL)


def check_sparse_embedding(sparse: bool, family: str, optimizer: Optimizer) -> None:
    """Raise a ValueError naming ``optimizer.sparse_embedding`` when ``optimizer`` cannot train ``family``'s
    gradients: a sparse-only optimizer on dense gradients, or an optimizer without sparse support on sparse ones."""
    name = type(optimizer).__name__
    if isinstance(optimizer, SPARSE_ONLY) and not (sparse and family == "embedding"):
        raise ValueError(
            f"optimizer.families.{family} is {name}, which needs sparse gradients: use it for the `embedding` "
            f"family with optimizer.sparse_embedding=true (it is {sparse})"
        )
    if sparse and family == "embedding" and not isinstance(optimizer, SPARSE_CAPABLE):
        allowed = ", ".join(sorted(cls.__name__ for cls in SPARSE_CAPABLE))
        raise ValueError(
            f"optimizer.sparse_embedding=true gives the `embedding` family sparse gradients, which {name} "
            f"(optimizer.families.embedding) cannot train; use one of {allowed}, or sparse_embedding=false"
        )
