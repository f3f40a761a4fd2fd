"""The Transformer over behaviours as KFAtt and DPN use it (Vaswani et al. 2017; KFAtt-trans, DPN App. G.2):
a self-attention encoder over the behaviours and a decoder that attends from the target (the query) to them."""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.nn.target_attention import masked_softmax, zero_padding


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, L, D] -> [B, heads, L, D / heads]"""
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)


def check_heads(dim: int, num_heads: int) -> None:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(
            f"model.attention_heads = {num_heads} must divide the behaviour vector's size {dim} "
            "(embedding_dim x the number of behaviour fields)"
        )


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with ``num_heads`` heads (Vaswani et al. eqs. 1-2, DPN eq. 14):

        head_h = softmax_t(q W_Q^h (k_t W_K^h)^T / sqrt(d_h)) v_t W_V^h,    out = [head_1, ..., head_H] W_O

    queries [B, M, D], keys (= values) [B, L, D], mask [B, L]; padded keys get no weight. Output [B, M, D].
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keys = zero_padding(keys, mask)
        q, k, v = (split_heads(proj(x), self.num_heads) for proj, x in
                   ((self.query, queries), (self.key, keys), (self.value, keys)))  # fmt: skip
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # [B, H, M, L]
        weights = masked_softmax(scores, mask[:, None, None, :])
        return self.out((weights @ v).transpose(1, 2).flatten(2))  # [B, M, D]


class EncoderLayer(nn.Module):
    """One post-norm Transformer encoder layer over the behaviours [B, L, D]:
    x = LN(x + Dropout(mix(x))), x = LN(x + Dropout(FFN(x))), FFN = Linear(D, 4D) -> ReLU -> Linear(4D, D),
    where the token mixer ``mix`` is the multi-head self-attention MHA(x, x) (``attention``), DPN's homogeneous DPO
    (``homogeneous``, ``nn/sequence_dpo.py``), or their sum (DPN eq. 15). Padded positions are keys of no one;
    their own outputs are left to the caller's mask."""

    def __init__(self, dim: int, num_heads: int, dropout: float, attention: bool = True,
                 homogeneous: nn.Module | None = None) -> None:  # fmt: skip
        super().__init__()
        if not attention and homogeneous is None:
            raise ValueError("an encoder layer needs self-attention, the homogeneous DPO or both")
        self.attention = MultiHeadAttention(dim, num_heads) if attention else None
        self.homogeneous = homogeneous
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mixed = self.attention(x, x, mask) if self.attention is not None else 0.0
        if self.homogeneous is not None:
            mixed = mixed + self.homogeneous(x, mask)
        x = self.norm1(x + self.dropout(mixed))
        return self.norm2(x + self.dropout(self.ffn(x)))


class RecencyPositions(nn.Module):
    """Learned position encodings indexed by recency: the most recent behaviour is position 0, the one before it 1,
    ... (histories are oldest first and padded at the end, so the index from the start would move the most recent
    behaviour with the history's length). Adds them to the behaviours [B, L, D]."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max_len, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, behaviours: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1, keepdim=True)  # [B, 1]
        steps = torch.arange(mask.shape[1], device=mask.device)
        recency = (lengths - 1 - steps).clamp(min=0)  # [B, L]; padding clamps to 0 and is masked downstream
        return behaviours + self.table(recency)
