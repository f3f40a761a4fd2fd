"""Dynamic parameterized operations (DPN, §2.2-2.4 and appendices B, C, E).

The generic DPO (eq. 3) over positions i (fields here; time steps in the sequence half):

    y_i = f(x_i ; 1/C(z) sum_j g_i(z_j; θ)),   f(x; W, b) = W x + b,

where the weight-generate function ``g`` turns a context ``z`` into the weights of a linear map. Every ``g`` here
is split in two steps so that the aggregation over context positions happens on a small **code**, not on the
generated weights:

    code(z) in R^K               (the context's part: z itself, or the gate σ(W_1^T z + b_1) of eq. 5)
    W(code) = sum_k code_k W_k   (linear in the code, so 1/C sum_j W(code(z_j)) = W(1/C sum_j code(z_j)))

and ``transform(x, code)`` computes ``W(code) x + b(code)`` by contracting ``x`` with the code and the stored
kernels, never building a per-instance [B, c, m] weight (each generator's docstring states its memory).
``weights(code)`` builds that weight for the places that need it as a tensor (the sequence half's dynamic
convolution kernels, the memory benchmark, the tests).

Generators (``GeneratorSpec.kind``):

- ``hyperdense`` (eq. 4): ``W(z) = reshape(Ŵ^T z)``, ``b(z) = W̃^T z``; Ŵ in R^{n x mc}; code = z.
- ``mok`` (eq. 5, mixture of kernels): ``s = σ(W_1^T z + b_1)`` in R^l, ``W(z) = sum_k s_k K_k``,
  ``b(z) = sum_k s_k β_k`` (W_2 of eq. 5 holds the l kernels [K_k; β_k]); σ ∈ identity / sigmoid / softmax over
  the l kernels. With ``heads`` h > 1, x and y split into h blocks; head a maps x's block a to y's block a with
  its own gate s_a in R^l over l kernels of (c/h) x (m/h) shared by the heads (multi-head: a block-diagonal W).
- ``md`` (matrix decomposition, App. E): ``W(z) = P φ(z) Q``, P in R^{c x r}, Q in R^{r x m}, and the r x r
  core φ(z) = sum_k s_k Φ_k a mixture of l kernels gated as in eq. 5; ``b(z) = sum_k s_k β_k``.
- ``static: true`` adds a static ``W_0 x + b_0`` to any of them: eq. 4's implicit part ``B^T x + b``, eq. 5's
  b_2, and Table 2a's ``W_0 + P φ(z) Q`` (docs/decisions.md, "DPN": the paper's parameter counts leave it out).

The feature-based DPO (§2.3) is the one-position case ``y = W(z) x + b(z)`` (``FeatureDPO``); the field-based
DPO (§2.4) runs it per field over the field positions with an aggregation of the context codes (``FieldDPO``);
``FieldDNN`` is the field-based model's implicit part ``W_f X W_l`` (App. B.3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

GeneratorKind = Literal["hyperdense", "mok", "md"]
Sigma = Literal["identity", "sigmoid", "softmax"]
Aggregation = Literal["summation", "self", "attention", "weighted_sum", "concat", "excluded"]
AGGREGATIONS = ("summation", "self", "attention", "weighted_sum", "concat", "excluded")

# the keys each generator kind reads; the others must be null (GeneratorSpec.check)
_USED = {"hyperdense": set(), "mok": {"kernels", "sigma", "heads"}, "md": {"kernels", "sigma", "rank"}}


@dataclass(frozen=True)
class GeneratorSpec:
    """The ``model.generator`` block of a DPN config: which ``g`` and its sizes."""

    kind: str
    kernels: int | None = None  # l (mok, md)
    sigma: str | None = None  # σ of eq. 5 (mok, md)
    heads: int | None = None  # h (mok)
    rank: int | None = None  # r (md)
    static: bool = False  # add W_0 x + b_0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], key: str = "model.generator") -> GeneratorSpec:
        unknown = set(cfg) - {"kind", "kernels", "sigma", "heads", "rank", "static"}
        if unknown:
            allowed = "kind, kernels, sigma, heads, rank, static"
            raise ValueError(f"{key} has unknown keys {sorted(unknown)}; allowed: {allowed}")
        spec = cls(**cfg)
        spec.check(key)
        return spec

    def check(self, key: str = "model.generator") -> None:
        if self.kind not in _USED:
            raise ValueError(f"{key}.kind={self.kind!r}; allowed: {', '.join(_USED)}")
        given = {k for k in ("kernels", "sigma", "heads", "rank") if getattr(self, k) is not None}
        if given != _USED[self.kind]:
            raise ValueError(
                f"{key}.kind={self.kind} takes {sorted(_USED[self.kind]) or 'none'} of kernels / sigma / heads / "
                f"rank (the others null); got {sorted(given) or 'none'}"
            )
        for k in ("kernels", "heads", "rank"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise ValueError(f"{key}.{k}={getattr(self, k)} must be >= 1")
        if self.sigma is not None and self.sigma not in ("identity", "sigmoid", "softmax"):
            raise ValueError(f"{key}.sigma={self.sigma!r}; allowed: identity, sigmoid, softmax")


def _uniform(*shape: int, fan_in: int) -> nn.Parameter:
    """nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for a stored kernel."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


def _gate(logits: torch.Tensor, sigma: str) -> torch.Tensor:
    """σ of eq. 5 over the last axis (the l kernels)."""
    if sigma == "softmax":
        return torch.softmax(logits, dim=-1)
    return torch.sigmoid(logits) if sigma == "sigmoid" else logits


class WeightGenerator(nn.Module):
    """``g``: context z [..., n] -> code [..., K]; ``transform(x [..., m], code [..., K]) -> W(code) x + b(code)``
    [..., c]. Leading axes broadcast (a [B, 1, K] code serves every field of a [B, F, m] input)."""

    code_dim: int

    def code(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transform(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weights(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generated W(code) [..., c, m] and b(code) [..., c], materialised."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.transform(x, self.code(z))


class HyperDense(WeightGenerator):
    """Eq. 4 without its static part: ``y = z^T Ŵ x + W̃^T z``, i.e. W(z) = reshape(Ŵ^T z), b(z) = W̃^T z.

    ``transform`` contracts the outer product z ⊗ x [..., n*m] with Ŵ [n*m, c]: memory O(B n m) against the
    materialised O(B m c); the parameters are O(n m c) either way (eq. 4's quadratic size)."""

    def __init__(self, in_dim: int, out_dim: int, context_dim: int) -> None:
        super().__init__()
        self.code_dim = context_dim
        self.kernel = _uniform(context_dim, in_dim, out_dim, fan_in=context_dim * in_dim)  # Ŵ: [n, m, c]
        self.bias_kernel = _uniform(context_dim, out_dim, fan_in=context_dim)  # W̃: [n, c]

    def code(self, z: torch.Tensor) -> torch.Tensor:
        return z  # eq. 4 is linear in z: aggregating the weights is aggregating z

    def transform(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        n, m, c = self.kernel.shape
        outer = (code.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)  # z ⊗ x: [..., n*m]
        return outer @ self.kernel.reshape(n * m, c) + code @ self.bias_kernel  # [..., c]

    def weights(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.einsum("...j,jmc->...cm", code, self.kernel), code @ self.bias_kernel


class MixtureOfKernels(WeightGenerator):
    """Eq. 5: ``s_a = σ(W_1^T z + b_1)_a`` in R^l per head a; head a's block of y is
    ``sum_k s_ak (K_k x_a + β_k)`` with x_a head a's block of x, K_k [(c/h) x (m/h)] shared by the heads.

    ``transform`` contracts s ⊗ x_a [..., h, l*m/h] with the stacked kernels [l*m/h, c/h]: memory O(B l m)
    against the materialised O(B m c); parameters l (m c / h^2 + c / h) + (n + 1) h l."""

    def __init__(self, in_dim: int, out_dim: int, context_dim: int, kernels: int, sigma: str, heads: int) -> None:
        super().__init__()
        if in_dim % heads or out_dim % heads:
            raise ValueError(
                f"model.generator.heads={heads} must divide the DPO's input and output sizes; got {in_dim} -> {out_dim}"
            )
        self.heads, self.kernels, self.sigma = heads, kernels, sigma
        self.code_dim = heads * kernels
        self.gate = nn.Linear(context_dim, heads * kernels)  # W_1, b_1
        self.kernel = _uniform(kernels, in_dim // heads, out_dim // heads, fan_in=in_dim // heads)  # K_k^T
        self.bias_kernel = _uniform(kernels, out_dim // heads, fan_in=in_dim // heads)  # β_k

    def code(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.gate(z).unflatten(-1, (self.heads, self.kernels))  # [..., h, l]
        return _gate(logits, self.sigma).flatten(-2)  # [..., h*l]

    def transform(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        l, mh, ch = self.kernel.shape
        s = code.unflatten(-1, (self.heads, l))  # [..., h, l]
        xh = x.unflatten(-1, (self.heads, mh))  # [..., h, m/h]
        mixed = (s.unsqueeze(-1) * xh.unsqueeze(-2)).flatten(-2)  # s_a ⊗ x_a: [..., h, l*m/h]
        y = mixed @ self.kernel.reshape(l * mh, ch) + s @ self.bias_kernel  # [..., h, c/h]
        return y.flatten(-2)  # [..., c]

    def weights(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = code.unflatten(-1, (self.heads, self.kernels))  # [..., h, l]
        per_head = torch.einsum("...ak,kio->...oia", s, self.kernel)  # [..., c/h, m/h, h]
        blocks = torch.diag_embed(per_head)  # [..., c/h, m/h, h(out), h(in)]: zero off the diagonal
        w = blocks.movedim(-2, -4).movedim(-1, -2)  # [..., h(out), c/h, h(in), m/h]
        lead = w.shape[:-4]
        return w.reshape(*lead, self.kernel.shape[2] * self.heads, -1), (s @ self.bias_kernel).flatten(-2)


class MatrixDecomposition(WeightGenerator):
    """App. E: ``W(z) = P φ(z) Q``, ``φ(z) = sum_k s_k Φ_k`` (r x r), s gated as eq. 5; ``b(z) = sum_k s_k β_k``.

    ``transform`` runs Q x [..., r], contracts s ⊗ Qx [..., l*r] with the stacked cores [l*r, r], then P: memory
    O(B (l r + c)), not even a per-instance r x r core; parameters r (m + c) + l (r^2 + c) + (n + 1) l."""

    def __init__(self, in_dim: int, out_dim: int, context_dim: int, kernels: int, sigma: str, rank: int) -> None:
        super().__init__()
        self.sigma = sigma
        self.code_dim = kernels
        self.gate = nn.Linear(context_dim, kernels)  # W_1, b_1
        self.q = nn.Linear(in_dim, rank, bias=False)  # Q: [r, m]
        self.core = _uniform(kernels, rank, rank, fan_in=rank)  # Φ_k^T: [l, r(in), r(out)]
        self.p = nn.Linear(rank, out_dim, bias=False)  # P: [c, r]
        self.bias_kernel = _uniform(kernels, out_dim, fan_in=rank)  # β_k

    def code(self, z: torch.Tensor) -> torch.Tensor:
        return _gate(self.gate(z), self.sigma)  # [..., l]

    def transform(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        l, r, _ = self.core.shape
        qx = self.q(x)  # [..., r]
        mixed = (code.unsqueeze(-1) * qx.unsqueeze(-2)).flatten(-2)  # s ⊗ Qx: [..., l*r]
        return self.p(mixed @ self.core.reshape(l * r, r)) + code @ self.bias_kernel  # [..., c]

    def weights(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi = torch.einsum("...k,kio->...oi", code, self.core)  # φ(z): [..., r, r]
        return self.p.weight @ phi @ self.q.weight, code @ self.bias_kernel  # [..., c, m], [..., c]


def weight_generator(spec: GeneratorSpec, in_dim: int, out_dim: int, context_dim: int) -> WeightGenerator:
    """The ``g`` named by ``spec`` for a DPO from ``in_dim`` (m) to ``out_dim`` (c) over a context of n values."""
    spec.check()
    if spec.kind == "hyperdense":
        return HyperDense(in_dim, out_dim, context_dim)
    if spec.kind == "mok":
        return MixtureOfKernels(in_dim, out_dim, context_dim, spec.kernels, spec.sigma, spec.heads)
    return MatrixDecomposition(in_dim, out_dim, context_dim, spec.kernels, spec.sigma, spec.rank)


class FeatureDPO(nn.Module):
    """Feature-based DPO (§2.3): ``y = W(z) x + b(z)`` (+ ``W_0 x + b_0`` when ``spec.static``).
    x [B, m], z [B, n] -> y [B, c]."""

    def __init__(self, in_dim: int, out_dim: int, context_dim: int, spec: GeneratorSpec) -> None:
        super().__init__()
        self.generator = weight_generator(spec, in_dim, out_dim, context_dim)
        self.static = nn.Linear(in_dim, out_dim) if spec.static else None

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = self.generator(x, z)  # [B, c]
        return y if self.static is None else y + self.static(x)


class FieldDPO(nn.Module):
    """Field-based DPO (§2.4): eq. 3 over field positions, ``y_i = W(a_i) x_i + b(a_i)`` with ``a_i`` the
    aggregated code of the context fields z_j (+ ``W_0 x_i + b_0`` when ``spec.static``):

    - ``summation``:    a_i = 1/t2 sum_j code(z_j)            (one weight for all fields)
    - ``self``:         a_i = code(z_i)                       (no cross-field term; needs t2 = t1)
    - ``excluded``:     a_i = 1/(t2-1) sum_{j != i} code(z_j) (App. C: FM's form; needs t2 = t1)
    - ``attention``:    a_i = sum_j softmax_j(w_j^T z_j) code(z_j)   (h(z_j; w_j) of §2.4)
    - ``weighted_sum``: a_i = sum_j A_ij code(z_j), A [t1 x t2] learned (a learned linear combination of the
                        fields, App. F / Table 14b)
    - ``concat``:       a_i = code([z_1, ..., z_t2])          (the whole context, concatenated)

    X [B, t1, m], Z [B, t2, n] -> Y [B, t1, c]. Aggregating codes is aggregating weights (the weights are linear
    in the code); the static part is outside the aggregation."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        context_dim: int,
        num_fields: int,
        num_context_fields: int,
        aggregation: Aggregation,
        spec: GeneratorSpec,
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"model.aggregation={aggregation!r}; allowed: {', '.join(AGGREGATIONS)}")
        if aggregation in ("self", "excluded") and num_context_fields != num_fields:
            raise ValueError(
                f"model.aggregation={aggregation} pairs each field with its own context field; the context has "
                f"{num_context_fields} fields for {num_fields} input fields (set model.context_fields=null)"
            )
        if aggregation == "excluded" and num_fields < 2:
            raise ValueError("model.aggregation=excluded needs at least 2 fields")
        self.aggregation = aggregation
        gen_context = context_dim * num_context_fields if aggregation == "concat" else context_dim
        self.generator = weight_generator(spec, in_dim, out_dim, gen_context)
        self.static = nn.Linear(in_dim, out_dim) if spec.static else None
        if aggregation == "attention":
            self.attention = nn.Parameter(torch.randn(num_context_fields, context_dim) * context_dim**-0.5)  # w_j
        if aggregation == "weighted_sum":
            self.mix = nn.Parameter(torch.full((num_fields, num_context_fields), 1.0 / num_context_fields))  # A

    def aggregate(self, z: torch.Tensor) -> torch.Tensor:
        """The per-field code a_i: [B, t1, K], or [B, 1, K] where every field shares it."""
        if self.aggregation == "concat":
            return self.generator.code(z.flatten(1)).unsqueeze(1)  # [B, 1, K]
        codes = self.generator.code(z)  # [B, t2, K]
        if self.aggregation == "summation":
            return codes.mean(dim=1, keepdim=True)
        if self.aggregation == "self":
            return codes
        if self.aggregation == "excluded":
            return (codes.sum(dim=1, keepdim=True) - codes) / (codes.shape[1] - 1)
        if self.aggregation == "attention":
            a = torch.softmax((z * self.attention).sum(-1), dim=1)  # h(z_j; w_j): [B, t2]
            return torch.einsum("bj,bjk->bk", a, codes).unsqueeze(1)
        return torch.einsum("ij,bjk->bik", self.mix, codes)  # weighted_sum

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = self.generator.transform(x, self.aggregate(z))  # [B, t1, c]
        return y if self.static is None else y + self.static(x)


class FieldDNN(nn.Module):
    """The implicit part of the field-based DPN (App. B.3): ``Y = W_f X W_l``, W_f [t1 x t1] mixes the fields,
    W_l [m x c] maps each field's vector; Glorot-initialised (Table 11). X [B, t1, m] -> Y [B, t1, c]."""

    def __init__(self, in_dim: int, out_dim: int, num_fields: int) -> None:
        super().__init__()
        self.field_mix = nn.Parameter(nn.init.xavier_uniform_(torch.empty(num_fields, num_fields)))  # W_f
        self.linear = nn.Parameter(nn.init.xavier_uniform_(torch.empty(in_dim, out_dim)))  # W_l

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bjm,mc->bic", self.field_mix, x, self.linear)  # [B, t1, c]
