"""The contract every model keeps (DESIGN §4)."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.embedding import CrossEmbedding, FeatureEmbedding


class CTRModel(nn.Module):
    """``forward(batch) -> logits [B]``, plus the two hooks the training module uses:

    - ``regularization()``: extra loss terms (orthogonal penalties, ...); zero unless a model adds some.
    - ``parameter_groups()``: parameters by family, so the optimizer config can give each family its own
      optimizer: ``embedding`` (every ``FeatureEmbedding`` and ``CrossEmbedding`` table) and ``dense`` (the
      rest). Models with architecture parameters add ``arch``.
    """

    def regularization(self) -> torch.Tensor:
        return torch.zeros((), device=next(self.parameters()).device)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        tables = (FeatureEmbedding, CrossEmbedding)
        embedding = {id(p) for m in self.modules() if isinstance(m, tables) for p in m.parameters()}
        groups: dict[str, list[nn.Parameter]] = {"embedding": [], "dense": []}
        for p in self.parameters():
            groups["embedding" if id(p) in embedding else "dense"].append(p)
        return {k: v for k, v in groups.items() if v}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
