"""PNN's product layers (Qu et al. 2016, "Product-based Neural Networks for User Response Prediction",
ICDM 2016, §3).

Both take the field embeddings f [B, F, D] and return the product signal p, flattened for the MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.pairs import pair_indices


def pairwise_inner_products(emb: torch.Tensor) -> torch.Tensor:
    """``<f_i, f_j>`` for every field pair i < j: [B, F, D] -> [B, P], pairs ordered as ``pair_indices``.

    Read off the Gram matrix f f^T ([B, F, F]), so no [B, P, D] tensor is built.
    """
    rows, cols = pair_indices(emb.shape[1], emb.device)
    gram = torch.bmm(emb, emb.transpose(1, 2))  # [B, F, F]
    return gram[:, rows, cols]  # [B, P]


class InnerProduct(nn.Module):
    """IPNN's product layer (Qu et al. 2016, §3.2 "Inner Product-based Neural Network"):
    ``p_{i,j} = <f_i, f_j>`` for all P = F(F-1)/2 pairs.

    As in the authors' released IPNN (and Qu et al. 2019), the P inner products go to the first hidden layer
    unreduced, i.e. W_p is a full matrix rather than the paper's rank-1 factorisation of it.
    [B, F, D] -> [B, P].
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        self.out_features = num_fields * (num_fields - 1) // 2

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return pairwise_inner_products(emb)  # [B, P]


class OuterProduct(nn.Module):
    """OPNN's product layer (Qu et al. 2016, §3.3 "Outer Product-based Neural Network") with the paper's
    *sum-pooling* (superposition) trick:

        p = sum_i sum_j f_i f_j^T = f_Σ f_Σ^T,   f_Σ = sum_i f_i,

    one D x D matrix per example instead of P of them, so the cost is O(F D + D^2). The double sum runs over
    all (i, j), self-products included, as in the paper. The kernel form of Qu et al. 2019 is not used.
    [B, F, D] -> [B, D*D] (the matrix, flattened row-major).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_features = dim * dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        f_sum = emb.sum(dim=1)  # [B, D]
        return (f_sum.unsqueeze(2) * f_sum.unsqueeze(1)).flatten(1)  # [B, D, D] -> [B, D*D]
