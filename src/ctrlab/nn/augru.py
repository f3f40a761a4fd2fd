"""DIEN's interest extractor loss and interest evolution (Zhou et al. 2019, "Deep Interest Evolution Network for
Click-Through Rate Prediction", AAAI 2019, §4.2-4.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctrlab.nn.target_attention import masked_softmax


class AUGRU(nn.Module):
    """GRU with attentional update gate (DIEN eqs. 1-4 and 9-10), over inputs i_t [B, L, D_in] and attention
    scores a_t [B, L]:

        u_t = sigmoid(W_u i_t + U_u h_{t-1} + b_u)             update gate
        r_t = sigmoid(W_r i_t + U_r h_{t-1} + b_r)             reset gate
        h~_t = tanh(W_h i_t + r_t ⊙ U_h h_{t-1} + b_h)
        u'_t = a_t * u_t                                        (eq. 9)
        h_t = (1 - u'_t) ⊙ h_{t-1} + u'_t ⊙ h~_t                 (eq. 10), h_0 = 0

    Returns the last state h_L [B, H]. A step with a_t = 0 keeps the state exactly, so padding (a_t = 0 there)
    never moves it and h_L is the state after the last real behaviour. The input projections run for all steps
    at once; the loop over time is inherent to the recurrence and vectorised over the batch.
    """

    def __init__(self, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input = nn.Linear(in_dim, 3 * hidden_dim)  # W_u, W_r, W_h with the biases
        self.recurrent = nn.Linear(hidden_dim, 3 * hidden_dim, bias=False)  # U_u, U_r, U_h

    def forward(self, inputs: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        gates_in = self.input(inputs)  # [B, L, 3H]
        h = inputs.new_zeros(inputs.shape[0], self.hidden_dim)  # [B, H]
        for t in range(inputs.shape[1]):
            xu, xr, xh = gates_in[:, t].chunk(3, dim=-1)
            hu, hr, hh = self.recurrent(h).chunk(3, dim=-1)
            u = torch.sigmoid(xu + hu) * attention[:, t : t + 1]  # u'_t [B, H]
            r = torch.sigmoid(xr + hr)
            candidate = torch.tanh(xh + r * hh)
            h = (1 - u) * h + u * candidate
        return h


class BilinearTargetAttention(nn.Module):
    """DIEN eq. 8: a_t = softmax_t(h_t W e_a) over the real behaviours; h_t [B, L, H] interest states,
    e_a [B, D] the target. Returns [B, L], zero at padding (an empty history: all zeros)."""

    def __init__(self, hidden_dim: int, target_dim: int) -> None:
        super().__init__()
        self.weight = nn.Linear(target_dim, hidden_dim, bias=False)  # W [H, D]

    def forward(self, states: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (states * self.weight(target).unsqueeze(1)).sum(dim=-1)  # h_t W e_a [B, L]
        return masked_softmax(scores, mask)


def sample_negatives(behaviours: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """For every position, a behaviour drawn uniformly from all real behaviours of the batch (DIEN's negative
    "non-clicked" item e^_{t+1}, drawn here from the batch, i.e. by behaviour popularity). [B, L, D]; zeros when
    the batch has no behaviour at all."""
    pool = behaviours[mask]  # [N, D]
    if pool.shape[0] == 0:
        return torch.zeros_like(behaviours)
    return pool[torch.randint(pool.shape[0], mask.shape, device=pool.device)]


def auxiliary_loss(
    states: torch.Tensor, behaviours: torch.Tensor, negatives: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """DIEN eq. 6 with the inner product as the click probability σ(<h_t, e>):

        L_aux = mean over pairs (t, t+1) with t+1 a real behaviour of
                -[log σ(<h_t, e_{t+1}>) + log(1 - σ(<h_t, e^_{t+1}>))]

    states h_t [B, L, H], behaviours e_t and negatives e^_t [B, L, H], mask [B, L]. DIEN sums over t and averages
    over users; we average over the real pairs so that the weight of the term does not grow with L. A scalar."""
    valid = mask[:, 1:]  # e_{t+1} real (padding sits at the end, so h_t is real too)
    h = states[:, :-1]
    positive = (h * behaviours[:, 1:]).sum(dim=-1)  # [B, L-1]
    negative = (h * negatives[:, 1:]).sum(dim=-1)
    # -log σ(x) = softplus(-x), -log(1 - σ(x)) = softplus(x)
    loss = F.softplus(-positive) + F.softplus(negative)
    return loss.masked_fill(~valid, 0.0).sum() / valid.sum().clamp(min=1)
