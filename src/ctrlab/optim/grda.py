"""Generalized regularized dual averaging (GRDA; Chao & Cheng 2019, "A generalization of regularized dual
averaging and its dynamics"), the optimizer AIM and AutoFIS train their architecture weights with (AIM eq. 21):

    α_{t+1} = argmin_α { αᵀ(-α_0 + γ Σ_{i=0..t} ∇L(α_i; Z_{i+1})) + g(t, γ) ||α||_1 + ||α||²_2 / 2 },
    g(t, γ) = c γ^{1/2} (t γ)^μ.

The minimiser is a soft-threshold of the dual average v = α_0 - γ Σ ∇L:

    α = sign(v) max(|v| - g, 0),

so a weight whose accumulated gradient signal does not outgrow the slowly rising threshold g becomes exactly
zero (and stays zero while it keeps losing), while a weight with a consistent gradient moves away from 0. The
state per parameter is v (initialised to the parameter's value, the α_0 of eq. 21), the number n of gradients
taken, and the threshold g reached so far.

Conventions (as the authors' released GRDA for TensorFlow and PyTorch):
- After n gradients, the threshold is g = c γ^{1/2} (n γ)^μ: eq. 21's t counts the gradients summed, so the very
  first step is already thresholded (eq. 21 taken literally would give g(0, γ) = 0 for the first step).
- The threshold grows by increments, c γ^{1/2+μ} (n^μ - (n-1)^μ) at step n with the learning rate γ of that
  step, so that a learning rate changed by a scheduler enters the threshold from then on; under a constant γ
  the increments sum to the closed form above exactly.
- Every parameter with a gradient advances its own n (a parameter without a gradient, ``grad is None``, is
  skipped); a zero gradient still advances n, so the threshold keeps rising for a weight that gets no signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer


class GRDA(Optimizer):
    """GRDA (AIM eq. 21): soft-thresholded dual averaging; see the module docstring.

    Args:
        lr: γ, the learning rate (the authors' α learning rate is 1.0 in their released AutoFIS / AIM scripts).
        c: the sparsity strength (AIM §4.2.2: 0.05 on Avazu, 0.005 on Criteo). c = 0 is plain dual averaging.
        mu: μ, how fast the threshold grows with the number of steps (AIM: 0.6 on Avazu, 0.9 on Criteo);
            Chao & Cheng's analysis takes 0.5 < μ < 1.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float, c: float, mu: float) -> None:
        if not lr > 0:
            raise ValueError(f"GRDA: lr (γ) = {lr}; allowed: lr > 0")
        if not c >= 0:
            raise ValueError(f"GRDA: c = {c}; allowed: c >= 0 (0 turns the L1 threshold off)")
        if not 0.5 < mu < 1:
            raise ValueError(f"GRDA: mu = {mu}; allowed: 0.5 < mu < 1 (Chao & Cheng 2019)")
        super().__init__(params, dict(lr=lr, c=c, mu=mu))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, c, mu = group["lr"], group["c"], group["mu"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("GRDA does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["v"] = p.detach().clone()  # the dual average starts at α_0 (eq. 21's -α_0 term)
                    state["n"] = 0
                    state["threshold"] = 0.0
                state["n"] += 1
                n = state["n"]
                state["threshold"] += c * lr ** (0.5 + mu) * (n**mu - (n - 1) ** mu)  # g(n, γ) under a constant γ
                v = state["v"]
                v.add_(p.grad, alpha=-lr)  # v = α_0 - γ Σ ∇L
                p.copy_(torch.sign(v) * (v.abs() - state["threshold"]).clamp_min(0.0))
        return loss
