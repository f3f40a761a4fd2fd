"""FTRL-Proximal (McMahan et al. 2013) and its group-lasso variant G-FTRL (xDeepInt, Yan & Li 2020), the
optimizers DynInt §4.1.4 trains with: FTRL for LR and FM, G-FTRL for embedding tables + FTRL for the PIN
layers of xDeepInt and DynInt.

Both keep, per coordinate, the accumulated squared gradient n and the "linear" state z, and compute the
weights in closed form from (z, n) — McMahan et al. 2013, Algorithm 1, with α = ``lr``:

    σ = (sqrt(n + g²) - sqrt(n)) / α            (the increase of the per-coordinate 1/learning-rate)
    z ← z + g - σ w
    n ← n + g²
    q = (β + sqrt(n)) / α + λ2                  (the per-coordinate curvature of the regularised problem)

FTRL then solves, per coordinate, argmin_w z w + q w²/2 + λ1 |w|:

    w = 0                                  if |z| <= λ1
    w = -(z - sign(z) λ1) / q              otherwise                 (element-wise sparsity)

and G-FTRL the same problem with λ1 ||w_row||₂ sqrt(d) on each row of d coordinates (group lasso, the
sqrt(group size) weighting of Yuan & Lin 2006), whose solution we take as

    w_row = 0                                        if ||z_row|| <= λ1 sqrt(d)
    w_row = -(1 - λ1 sqrt(d) / ||z_row||) z_row / q   otherwise        (row-wise sparsity)

with q element-wise. This is the exact minimiser when q is the same across the row (e.g. before any update,
or when the row's coordinates saw equal squared gradients); with per-coordinate q it is the usual
closed-form approximation (shrink z_row as a group, then scale per coordinate), which keeps the
per-coordinate learning rates of FTRL and zeroes exactly the rows the exact solution zeroes.

No drift without gradient: a coordinate (FTRL) or a row (G-FTRL) whose gradient is exactly zero in a step
is left untouched — its n and z cannot change (g = 0 gives σ = 0), and its weights are only rewritten where
the gradient is non-zero. Embedding rows absent from a batch (zero rows of a dense gradient) therefore stay
as they are. Inside a row that does get a gradient, G-FTRL rewrites the whole row: the group shrinkage
depends on the row norm of z. G-FTRL's groups are the table's rows, so its group norm never reaches outside a
looked-up row either.

Sparse gradients. Both therefore take the sparse gradient of ``nn.Embedding(sparse=True)``
(``optimizer.sparse_embedding=true``) and touch only the looked-up rows: the same update as the dense path,
in work proportional to the batch instead of the table.

Loss scale. Multiplying the loss by c multiplies every gradient by c; with (α, cβ, cλ1, cλ2, c²n0) in place
of (α, β, λ1, λ2, n0) the state follows as n -> c²n, σ -> cσ, z -> cz, q -> cq (for the same weights), so
both closed forms (including the group threshold λ1 sqrt(d) against ||z_row|| and the warm-start z0) give the
same weights. A batch-mean loss is the summed loss with c = 1/B: constants tuned on a summed loss carry over
divided by B, α unchanged (configs/optimizer/gftrl_ftrl.yaml does so for the authors' G-FTRL constants).

Initial values (``warm_start``). In plain FTRL-Proximal the weights are a function of (z, n) only, and
z = 0 means w = 0: the first update of a coordinate throws away its initial value (TensorFlow's Ftrl does
this too). That is harmless for LR and embeddings that start near zero, but it puts a deep model's dense
layers back at the all-zero saddle. With ``warm_start=True`` (default) z is initialised so that the closed
form reproduces the initial weights (FTRL: z0 = -q0 w0 - λ1 sign(w0); G-FTRL: z0_row = -κ q0 ⊙ w0_row with
κ = 1 + λ1 sqrt(d) / ||q0 ⊙ w0_row||). Then the first step is w1 = w0 - g / q1 (no λ1) instead of
w1 ≈ -g / q1, i.e. FTRL-Proximal whose proximal and L2 terms are centred at the initial point instead of 0.
``warm_start=False`` is the textbook algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer


class FTRL(Optimizer):
    """FTRL-Proximal with per-coordinate learning rates (McMahan et al. 2013): see the module docstring.

    Args:
        lr: α, the learning-rate scale.
        beta: β, smooths the per-coordinate rate α / (β + sqrt(n)) at the start (McMahan: "β = 1 is usually
            good enough").
        l1, l2: λ1 (sparsity) and λ2 (ridge) strengths.
        initial_accumulator_value: n0, the starting value of n (TensorFlow's default is 0.1, McMahan's 0).
        warm_start: keep the parameters' initial values (see the module docstring).
    """

    _needs_positive_q0 = False  # element-wise: a coordinate is only solved once it has had a gradient

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 0.05,
        beta: float = 1.0,
        l1: float = 0.0,
        l2: float = 0.0,
        initial_accumulator_value: float = 0.0,
        warm_start: bool = True,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr (alpha) must be positive, got {lr}")
        for name, value in (
            ("beta", beta),
            ("l1", l1),
            ("l2", l2),
            ("initial_accumulator_value", initial_accumulator_value),
        ):
            if value < 0:
                raise ValueError(f"{name} must be non-negative, got {value}")
        defaults = dict(
            lr=lr, beta=beta, l1=l1, l2=l2, initial_accumulator_value=initial_accumulator_value, warm_start=warm_start
        )
        if self._needs_positive_q0 and beta == 0 and initial_accumulator_value == 0 and l2 == 0:
            raise ValueError(f"{type(self).__name__} needs beta > 0, initial_accumulator_value > 0 or l2 > 0")
        super().__init__(params, defaults)

    # --- the parts G-FTRL changes -------------------------------------------------------------------------
    @staticmethod
    def _view(p: torch.Tensor) -> torch.Tensor:
        """The tensor the closed form works on; FTRL is element-wise, so the parameter itself."""
        return p

    @staticmethod
    def _active(g: torch.Tensor) -> torch.Tensor:
        """Where the weights are rewritten this step: the coordinates with a non-zero gradient."""
        return g != 0

    @staticmethod
    def _solve(z: torch.Tensor, q: torch.Tensor, l1: float) -> torch.Tensor:
        """argmin_w z w + q w²/2 + λ1 |w|, element-wise."""
        return torch.where(z.abs() <= l1, torch.zeros_like(z), -(z - torch.sign(z) * l1) / q)

    @staticmethod
    def _initial_z(w: torch.Tensor, q: torch.Tensor, l1: float) -> torch.Tensor:
        """The z for which ``_solve(z, q, l1) == w`` (warm start)."""
        return -q * w - torch.sign(w) * l1

    # --- shared ---------------------------------------------------------------------------------------------
    @staticmethod
    def _curvature(n: torch.Tensor, group: dict) -> torch.Tensor:
        return (group["beta"] + n.sqrt()) / group["lr"] + group["l2"]  # q: [same shape as n]

    def _solve_rows(
        self, w: torch.Tensor, g: torch.Tensor, n: torch.Tensor, z: torch.Tensor, group: dict
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One FTRL step on rows [R, d] of (w, g, n, z): returns the new (w, n, z), out of place."""
        n_new = n + g * g
        sigma = (n_new.sqrt() - n.sqrt()) / group["lr"]  # 0 where g == 0
        z_new = z + (g - sigma * w)  # unchanged where g == 0
        solved = self._solve(z_new, self._curvature(n_new, group), group["l1"])
        return torch.where(self._active(g), solved, w), n_new, z_new

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
                w = self._view(p)
                state = self.state[p]
                if not state:
                    n0 = torch.full_like(w, group["initial_accumulator_value"])
                    z0 = (
                        self._initial_z(w, self._curvature(n0, group), group["l1"])
                        if group["warm_start"]
                        else torch.zeros_like(w)
                    )
                    state["n"], state["z"] = n0, z0
                n, z = state["n"], state["z"]
                if p.grad.is_sparse:
                    # nn.Embedding(sparse=True): only the looked-up rows; the others have g = 0, which leaves
                    # their w, n and z as they are, so skipping them is exact (see "No drift without gradient")
                    grad = p.grad.coalesce()  # duplicate rows summed, as in the dense gradient
                    rows = grad.indices()[0]  # [R]
                    g = grad.values().reshape(len(rows), *w.shape[1:])  # [R, d]
                    w_r, n_r, z_r = self._solve_rows(w[rows], g, n[rows], z[rows], group)
                    w.index_copy_(0, rows, w_r)
                    n.index_copy_(0, rows, n_r)
                    z.index_copy_(0, rows, z_r)
                else:
                    w_new, n_new, z_new = self._solve_rows(w, self._view(p.grad), n, z, group)
                    w.copy_(w_new)
                    n.copy_(n_new)
                    z.copy_(z_new)
        return loss


class GroupLassoFTRL(FTRL):
    """G-FTRL: FTRL with a group-lasso penalty λ1 sqrt(d) ||w_row||₂ on every row (xDeepInt; DynInt §3 and
    Fig. 2c: row-wise sparsity of the embedding table). See the module docstring for the closed form.

    Rows are the first axis of a parameter ([rows, ...] -> [rows, d]); a 1-D parameter has one-element rows,
    where G-FTRL reduces to FTRL. Arguments as ``FTRL``; ``l1`` is the group-lasso λ1. The starting
    curvature q0 = (β + sqrt(n0)) / α + λ2 must be positive: a row is solved as a whole, including coordinates
    that have not had a gradient yet.
    """

    _needs_positive_q0 = True

    @staticmethod
    def _view(p: torch.Tensor) -> torch.Tensor:
        return p.view(p.shape[0], -1) if p.dim() > 1 else p.view(-1, 1)  # [rows, d]

    @staticmethod
    def _active(g: torch.Tensor) -> torch.Tensor:
        return (g != 0).any(dim=1, keepdim=True)  # [rows, 1]: a row with any gradient is rewritten whole

    @staticmethod
    def _solve(z: torch.Tensor, q: torch.Tensor, l1: float) -> torch.Tensor:
        threshold = l1 * math.sqrt(z.shape[1])  # λ1 sqrt(d)
        norm = z.norm(dim=1, keepdim=True)  # [rows, 1]
        shrink = (1.0 - threshold / norm.clamp_min(torch.finfo(z.dtype).tiny)).clamp_min(0.0)  # 0 iff zeroed
        return -shrink * z / q

    @staticmethod
    def _initial_z(w: torch.Tensor, q: torch.Tensor, l1: float) -> torch.Tensor:
        qw = q * w  # [rows, d]
        norm = qw.norm(dim=1, keepdim=True)
        kappa = 1.0 + l1 * math.sqrt(w.shape[1]) / norm.clamp_min(torch.finfo(w.dtype).tiny)
        return torch.where(norm > 0, -kappa * qw, torch.zeros_like(qw))
