"""PIN's micro-networks (Qu et al. 2019, "Product-based Neural Networks for User Response Prediction over
Multi-field Categorical Data", ACM TOIS 2019, "Product-network In Network")."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ctrlab.nn.pairs import pair_indices


class PairSubNetworks(nn.Module):
    """One small MLP per field pair, ``f_{i,j} = net_{i,j}([v_i, v_j, v_i ⊙ v_j])``, all P of them at once.

    Each sub-network is ``3D -> hidden[0] -> ... -> hidden[-1]``: Linear, [LayerNorm], then ReLU between
    layers; the last layer is Linear [+ LayerNorm] with no activation (as in the authors' released
    ``sub_nn_layers = full 40, ln, relu, full 5, ln``, the "[40, 5]" of OptInter Table IV). Weights are per
    pair, held as batched tensors W_l [P, in, out], b_l [P, out] and applied with one batched matmul over
    the pair dimension; the LayerNorm's affine part is shared by the pairs. Rows start like ``nn.Linear``'s,
    U(-1/sqrt(in), 1/sqrt(in)).

    Input [B, F, D] -> [B, P * hidden[-1]] (the P outputs, concatenated).
    """

    def __init__(self, num_fields: int, dim: int, hidden: list[int], norm: Literal["none", "layer"]) -> None:
        super().__init__()
        if norm not in ("none", "layer"):
            raise ValueError(f"sub-network norm must be none or layer; got {norm!r}")
        if not hidden:
            raise ValueError("a PIN sub-network needs at least one layer")
        num_pairs = num_fields * (num_fields - 1) // 2
        widths = [3 * dim, *hidden]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(num_pairs, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_pairs, fan_out).uniform_(-bound, bound)))
        self.norms = nn.ModuleList(nn.LayerNorm(w) if norm == "layer" else nn.Identity() for w in hidden)
        self.out_features = num_pairs * hidden[-1]

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        rows, cols = pair_indices(emb.shape[1], emb.device)
        by_field = emb.transpose(0, 1)  # [F, B, D]: pair-major layout, so each layer is one bmm over P
        v_i, v_j = by_field[rows], by_field[cols]  # [P, B, D] each
        h = torch.cat([v_i, v_j, v_i * v_j], dim=-1)  # [P, B, 3D]
        last = len(self.weights) - 1
        for layer, (w, b, norm) in enumerate(zip(self.weights, self.biases, self.norms, strict=True)):
            h = norm(torch.baddbmm(b.unsqueeze(1), h, w))  # h W_l + b_l: [P, B, hidden[layer]]
            if layer < last:
                h = torch.relu(h)
        return h.transpose(0, 1).flatten(1)  # [B, P, hidden[-1]] -> [B, P * hidden[-1]]
