"""The Gumbel-softmax selector of OptInter's search (eqs. 16-17): one choice among K options per unit.

Architecture parameters are stored as logits ``[U, K]`` rather than as the paper's class probabilities α:
any real matrix is a valid logit, so Adam steps on them need no projection, and ``log α`` of a normalised α is
a logit up to a per-unit constant that the softmax ignores, so ``softmax((logits + g) / τ)`` is eq. 17 with
eq. 16's noise. The authors' code (github.com/fuyuanlyu/OptInter, ``model_search.py``) also keeps raw logits,
drawn Xavier-normal, and so does this selector.

- training, ``gumbel_noise=True`` (the paper): ``p = softmax((logits + g) / τ)``, ``g = -log(-log u)``,
  ``u ~ U(0, 1)`` i.i.d. per unit and per forward (one architecture sample per batch, shared by its rows, as
  the authors' α has no batch axis); drawn from torch's global generator, so a run is reproducible under
  ``torch.manual_seed``. ``hard=True`` returns the one-hot argmax of the sample with the soft sample's gradient
  (straight-through, Jang et al. 2017).
- training, ``gumbel_noise=False`` (the authors' code: no noise, only the annealed temperature):
  ``p = softmax(logits / τ)``.
- eval: ``softmax(logits / τ)`` without noise, so that validation during a search scores the current
  architecture deterministically (the authors' code does the same, having no noise at all).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GumbelMethodSelector(nn.Module):
    """Weights ``p`` [U, K] over the K options of each of U units (rows sum to 1). ``temperature`` τ is set from
    outside (``SearchableModel.set_temperature``, a schedule callback)."""

    def __init__(
        self, num_units: int, num_options: int, temperature: float = 1.0, gumbel_noise: bool = True, hard: bool = False
    ) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.empty(num_units, num_options))  # [U, K], the architecture parameters
        nn.init.xavier_normal_(self.logits)  # the authors' init: near-uniform choices, ties broken at random
        self.gumbel_noise = gumbel_noise
        self.hard = hard
        self.set_temperature(temperature)

    def set_temperature(self, tau: float) -> None:
        if not tau > 0:
            raise ValueError(f"Gumbel-softmax temperature must be > 0; got {tau}")
        self.temperature = float(tau)

    def forward(self) -> torch.Tensor:
        logits = self.logits  # [U, K]
        if self.training and self.gumbel_noise:
            u = torch.rand_like(logits).clamp_(torch.finfo(logits.dtype).tiny, 1.0)  # u = 0 would give -log(0)
            logits = logits - torch.log(-torch.log(u))  # eq. 16: log α + g
        p = F.softmax(logits / self.temperature, dim=-1)  # eq. 17, [U, K]
        if self.training and self.hard:
            one_hot = F.one_hot(p.argmax(-1), p.shape[-1]).to(p.dtype)
            p = one_hot + (p - p.detach())  # value: exactly the one-hot (x - x == 0); gradient: the soft sample's
        return p
