"""Behaviour-sequence models: DIN, DIEN, and the Transformer encoder-decoder with a multi-head or KFAtt decoder.

They read a user's history as a sequence. A *behaviour field* is a ``sequence`` field that shares a scalar field's
vocabulary, its *target* (Amazon / the stand-in: ``hist_item_id`` -> ``item_id``, ``hist_cat_id`` -> ``cat_id``).
A behaviour e_t is the concatenation of its fields' embeddings at step t, the target v_A that of the target fields,
both of size D_b = D x (behaviour fields). Every other field (user, the targets themselves, other bags, mean-pooled)
goes to the MLP as in DNN, beside the user's interest vector of size D_b:

    logit = MLP([e_field_1, ..., e_field_F', interest])
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel, ModelOutput
from ctrlab.nn.augru import AUGRU, BilinearTargetAttention, auxiliary_loss, sample_negatives
from ctrlab.nn.behaviour_transformer import EncoderLayer, MultiHeadAttention, RecencyPositions, check_heads
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.kfatt import KalmanFilteringAttention, repeat_counts
from ctrlab.nn.mlp import MLP, Activation, Norm
from ctrlab.nn.target_attention import DINAttention, zero_padding

Decoder = Literal["attention", "kfatt_base", "kfatt_freq"]
DECODERS = ("attention", "kfatt_base", "kfatt_freq")


class BehaviourInputs(nn.Module):
    """The embeddings every sequence model starts from: ``forward(batch)`` returns the other fields [B, F', D],
    the target v_A [B, D_b], the behaviours e_t [B, L, D_b] (zero at padding) and their mask [B, L]."""

    def __init__(self, feature_map: FeatureMap, dim: int, init_std: float, model: str) -> None:
        super().__init__()
        names = [f.name for f in feature_map.fields]
        bag_names = [f.name for f in feature_map.bag_fields]
        pairs = [(f.name, f.shares) for f in feature_map.bag_fields if f.kind == "sequence" and f.shares]
        if not pairs:
            raise ValueError(
                f"model={model} reads behaviour histories, but data {feature_map.dataset!r} has no sequence field "
                "sharing a target field's vocabulary (fields: " + ", ".join(names) + "); use data=synthetic_sequence "
                "or data=amazon_electronics"
            )
        self.embedding = FeatureEmbedding(feature_map, dim, init_std)
        behaviour_bags = [bag_names.index(name) for name, _ in pairs]
        self.register_buffer("behaviour_bags", torch.tensor(behaviour_bags), persistent=False)  # [C]
        self.register_buffer("targets", torch.tensor([names.index(t) for _, t in pairs]), persistent=False)  # [C]
        num_scalar = len(feature_map.scalar_fields)
        others = [i for i in range(len(names)) if i - num_scalar not in behaviour_bags]
        self.register_buffer("others", torch.tensor(others), persistent=False)  # [F']
        self.num_others, self.behaviour_dim = len(others), dim * len(pairs)

    def behaviour_ids(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The behaviour fields' ids [B, C, L]."""
        return batch["bag_ids"][:, self.behaviour_bags]

    def forward(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        fields = self.embedding(batch)  # [B, F, D]
        target = fields[:, self.targets].flatten(1)  # [B, C*D]
        bags = self.embedding.bag_embeddings(batch)[:, self.behaviour_bags]  # [B, C, L, D]
        behaviours = bags.permute(0, 2, 1, 3).flatten(2)  # [B, L, C*D]
        mask = self.behaviour_ids(batch)[:, 0] > 0  # [B, L]: the behaviour fields are aligned
        return fields[:, self.others], target, behaviours, mask


class SequenceModel(CTRModel):
    """The shared read-out: ``BehaviourInputs`` + ``interest(...)`` + the MLP over both."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        mlp_hidden: list[int],
        mlp_dropout: float,
        mlp_norm: Norm,
        mlp_activation: Activation,
        model: str,
    ) -> None:
        super().__init__()
        self.inputs = BehaviourInputs(feature_map, embedding_dim, embedding_init_std, model)
        in_dim = self.inputs.num_others * embedding_dim + self.inputs.behaviour_dim
        self.mlp = MLP(in_dim, mlp_hidden, 1, mlp_dropout, mlp_norm, mlp_activation)

    def readout(self, others: torch.Tensor, interest: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([others.flatten(1), interest], dim=1)).squeeze(-1)  # [B]


class DIN(SequenceModel):
    """Deep Interest Network (Zhou et al. 2018): the interest is DIN's attention pooling of the behaviours with the
    target as query (``DINAttention``); Dice or PReLU in the activation unit and the MLP (``activation``)."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        attention_hidden: list[int],
        activation: Activation,
        mlp_hidden: list[int],
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        super().__init__(
            feature_map, embedding_dim, embedding_init_std, mlp_hidden, mlp_dropout, mlp_norm, activation, "din"
        )
        self.attention = DINAttention(self.inputs.behaviour_dim, attention_hidden, activation)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        others, target, behaviours, mask = self.inputs(batch)
        return self.readout(others, self.attention(target, behaviours, mask))


class DIEN(SequenceModel):
    """Deep Interest Evolution Network (Zhou et al. 2019). Interest extractor: a GRU over the behaviours (hidden
    size D_b, so its states meet the behaviour embeddings in the auxiliary loss), trained also by the auxiliary
    loss (eq. 6, ``auxiliary_loss`` x ``aux_loss_weight``, DIEN's alpha) through ``regularization``. Interest
    evolving: AUGRU driven by the target attention of eq. 8; its last state is the interest.

    The GRU runs over the padded batch: it is causal and padding sits at the end, so the states at real steps are
    those of the unpadded history; the states after them are masked out of the loss and the attention.
    """

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        aux_loss_weight: float,
        mlp_hidden: list[int],
        mlp_dropout: float,
        mlp_norm: Norm,
        mlp_activation: Activation,
    ) -> None:
        super().__init__(
            feature_map, embedding_dim, embedding_init_std, mlp_hidden, mlp_dropout, mlp_norm, mlp_activation, "dien"
        )
        if aux_loss_weight < 0:
            raise ValueError(f"model.aux_loss_weight = {aux_loss_weight} must be >= 0")
        dim = self.inputs.behaviour_dim
        self.aux_loss_weight = aux_loss_weight
        self.extractor = nn.GRU(dim, dim, batch_first=True)
        self.attention = BilinearTargetAttention(dim, dim)
        self.evolution = AUGRU(dim, dim)

    def forward_train(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        others, target, behaviours, mask = self.inputs(batch)
        states, _ = self.extractor(behaviours)  # h_t [B, L, D_b]
        attention = self.attention(states, target, mask)  # a_t [B, L], 0 at padding
        interest = self.evolution(zero_padding(states, mask), attention)  # h'_T [B, D_b]
        aux = {"states": states, "behaviours": behaviours, "mask": mask}
        return ModelOutput(self.readout(others, interest), aux)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_train(batch).logits

    def regularization(self, batch: dict[str, torch.Tensor], output: ModelOutput) -> dict[str, torch.Tensor]:
        if self.aux_loss_weight == 0:
            return {}
        behaviours, mask = output.aux["behaviours"], output.aux["mask"]
        loss = auxiliary_loss(output.aux["states"], behaviours, sample_negatives(behaviours, mask), mask)
        return {"dien_aux": self.aux_loss_weight * loss}


class BehaviourTransformer(SequenceModel):
    """The encoder-decoder over behaviours of KFAtt and DPN (DPN App. G.2, eqs. 13-16): recency position encodings,
    ``encoder_layers`` self-attention layers (``EncoderLayer``; 0 = none), then a decoder from the target to the
    encoded behaviours: ``attention`` (multi-head, Table 5's "Trans"), ``kfatt_base`` or ``kfatt_freq`` (KFAtt).
    KFAtt-freq counts repeats on the behaviours' ids, so the copies of one item are one sensor."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        encoder_layers: int,
        attention_heads: int,
        dropout: float,
        decoder: Decoder,
        mlp_hidden: list[int],
        mlp_dropout: float,
        mlp_norm: Norm,
        mlp_activation: Activation,
    ) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"model.decoder = {decoder!r} is not one of {list(DECODERS)}")
        if encoder_layers < 0:
            raise ValueError(f"model.encoder_layers = {encoder_layers} must be >= 0")
        name = "transformer" if decoder == "attention" else "kfatt"
        super().__init__(
            feature_map, embedding_dim, embedding_init_std, mlp_hidden, mlp_dropout, mlp_norm, mlp_activation, name
        )
        dim = self.inputs.behaviour_dim
        check_heads(dim, attention_heads)
        self.positions = RecencyPositions(feature_map.bag_len, dim) if encoder_layers else None
        self.encoder = nn.ModuleList(EncoderLayer(dim, attention_heads, dropout) for _ in range(encoder_layers))
        self.decoder_kind = decoder
        self.decoder = (
            MultiHeadAttention(dim, attention_heads)
            if decoder == "attention"
            else KalmanFilteringAttention(dim, attention_heads, frequency=decoder == "kfatt_freq")
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        others, target, x, mask = self.inputs(batch)
        if self.positions is not None:
            x = self.positions(x, mask)
        for layer in self.encoder:
            x = layer(x, mask)
        if self.decoder_kind == "attention":
            interest = self.decoder(target.unsqueeze(1), x, mask).squeeze(1)
        else:
            freq = self.decoder_kind == "kfatt_freq"
            counts = repeat_counts(self.inputs.behaviour_ids(batch), mask) if freq else None
            interest = self.decoder(target, x, mask, counts)
        return self.readout(others, interest)
