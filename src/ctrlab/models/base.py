"""The contract every model keeps (docs/architecture.md, "Model contract")."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ctrlab.nn.embedding import CrossEmbedding, FeatureEmbedding


@dataclass
class ModelOutput:
    """What a training step gets from ``CTRModel.forward_train``: the logits and the intermediate tensors that the
    model's ``regularization`` needs (DWP's per-instance factors, later DIEN's interest states), keyed by name."""

    logits: torch.Tensor  # [B]
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class CTRModel(nn.Module):
    """``forward(batch) -> logits [B]`` for inference, plus the hooks the training module uses:

    - ``forward_train(batch) -> ModelOutput``: the logits and whatever ``regularization`` needs from the
      forward pass; by default the logits alone.
    - ``regularization(batch, output) -> {name: scalar}``: extra loss terms added to the BCE (orthogonal
      penalties, auxiliary losses), each logged as ``train/reg/<name>``; none unless a model adds some. They
      see the batch and this forward's outputs, so no model keeps state from "the last forward".
    - ``parameter_groups()``: parameters by family, so the optimizer config can give each family its own
      optimizer: ``embedding`` (every ``FeatureEmbedding`` and ``CrossEmbedding`` table) and ``dense`` (the
      rest). Models with architecture parameters add ``arch``.
    """

    def forward_train(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        return ModelOutput(self(batch))

    def regularization(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        return {}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        tables = (FeatureEmbedding, CrossEmbedding)
        embedding = {id(p) for m in self.modules() if isinstance(m, tables) for p in m.parameters()}
        groups: dict[str, list[nn.Parameter]] = {"embedding": [], "dense": []}
        for p in self.parameters():
            groups["embedding" if id(p) in embedding else "dense"].append(p)
        return {k: v for k, v in groups.items() if v}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
