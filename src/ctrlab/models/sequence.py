"""Behaviour-sequence models: DIN, DIEN, and the Transformer encoder-decoder with a multi-head or KFAtt decoder,
each optionally with DPN's sequence-based DPO (§2.5, App. B.4; ``nn/sequence_dpo.py``): DIN / DIEN + the
heterogeneous DPO summed with their attention's interest, the Transformer + the homogeneous DPO summed with the
self-attention in the encoder and + the heterogeneous DPO summed with the decoder, and sDPN (DPO layers in place
of the attention: ``encoder_attention: false``, ``decoder: null``).

They read a user's history as a sequence. A *behaviour field* is a ``sequence`` field that shares a scalar field's
vocabulary, its *target* (Amazon / the stand-in: ``hist_item_id`` -> ``item_id``, ``hist_cat_id`` -> ``cat_id``).
A behaviour e_t is the concatenation of its fields' embeddings at step t, the target v_A that of the target fields,
both of size D_b = D x (behaviour fields). Every other field (user, the targets themselves, other bags, mean-pooled)
goes to the MLP as in DNN, beside the user's interest vector of size D_b:

    logit = MLP([e_field_1, ..., e_field_F', interest])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel, ModelOutput
from ctrlab.nn.augru import AUGRU, BilinearTargetAttention, auxiliary_loss, sample_negatives
from ctrlab.nn.behaviour_transformer import EncoderLayer, MultiHeadAttention, RecencyPositions, check_heads
from ctrlab.nn.dpo import GeneratorSpec
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.kfatt import KalmanFilteringAttention, repeat_counts
from ctrlab.nn.mlp import MLP, Activation, Norm
from ctrlab.nn.sequence_dpo import HeterogeneousDPO, HomogeneousDPO
from ctrlab.nn.target_attention import DINAttention, zero_padding

Decoder = Literal["attention", "kfatt_base", "kfatt_freq"]
DECODERS = ("attention", "kfatt_base", "kfatt_freq")


def _block_keys(cfg: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    unknown = set(cfg) - set(allowed)
    missing = set(allowed) - set(cfg)
    if unknown or missing:
        raise ValueError(
            f"{key} takes exactly the keys {', '.join(allowed)}; unknown {sorted(unknown)}, missing {sorted(missing)}"
        )


def heterogeneous_dpo(cfg: Mapping[str, Any] | None, dim: int) -> HeterogeneousDPO | None:
    """``model.heterogeneous`` ({generator: ...}) -> the query-behaviour DPO from the target (D_b) to an interest
    of D_b with the behaviours (D_b) as context; null -> None."""
    if cfg is None:
        return None
    _block_keys(cfg, "model.heterogeneous", ("generator",))
    spec = GeneratorSpec.from_config(cfg["generator"], "model.heterogeneous.generator")
    return HeterogeneousDPO(dim, dim, dim, spec)


def homogeneous_dpo(cfg: Mapping[str, Any] | None, dim: int) -> HomogeneousDPO | None:
    """``model.homogeneous`` ({kernel_size, generator}) -> the behaviour-behaviour DPO over D_b channels."""
    if cfg is None:
        return None
    _block_keys(cfg, "model.homogeneous", ("kernel_size", "generator"))
    spec = GeneratorSpec.from_config(cfg["generator"], "model.homogeneous.generator")
    return HomogeneousDPO(dim, cfg["kernel_size"], spec)


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

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
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
    target as query (``DINAttention``); Dice or PReLU in the activation unit and the MLP (``activation``).
    ``heterogeneous`` (DPN App. B.4, "DIN + Heter"): + the query-behaviour DPO of the target over the behaviours."""

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
        heterogeneous: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            feature_map, embedding_dim, embedding_init_std, mlp_hidden, mlp_dropout, mlp_norm, activation, "din"
        )
        self.attention = DINAttention(self.inputs.behaviour_dim, attention_hidden, activation)
        self.heterogeneous = heterogeneous_dpo(heterogeneous, self.inputs.behaviour_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        others, target, behaviours, mask = self.inputs(batch)
        interest = self.attention(target, behaviours, mask)  # [B, D_b]
        if self.heterogeneous is not None:
            interest = interest + self.heterogeneous(target, behaviours, mask)
        return self.readout(others, interest)


class DIEN(SequenceModel):
    """Deep Interest Evolution Network (Zhou et al. 2019). Interest extractor: a GRU over the behaviours (hidden
    size D_b, so its states meet the behaviour embeddings in the auxiliary loss), trained also by the auxiliary
    loss (eq. 6, ``auxiliary_loss`` x ``aux_loss_weight``, DIEN's alpha) through ``regularization``. Interest
    evolving: AUGRU driven by the target attention of eq. 8; its last state is the interest.

    The GRU runs over the padded batch: it is causal and padding sits at the end, so the states at real steps are
    those of the unpadded history; the states after them are masked out of the loss and the attention.
    ``heterogeneous`` (DPN App. B.4, "DIEN + Heter"): + the query-behaviour DPO of the target over the extracted
    interest states h_t (what DIEN's attention reads).
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
        heterogeneous: Mapping[str, Any] | None = None,
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
        self.heterogeneous = heterogeneous_dpo(heterogeneous, dim)

    def forward_train(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        others, target, behaviours, mask = self.inputs(batch)
        states, _ = self.extractor(behaviours)  # h_t [B, L, D_b]
        attention = self.attention(states, target, mask)  # a_t [B, L], 0 at padding
        interest = self.evolution(zero_padding(states, mask), attention)  # h'_T [B, D_b]
        if self.heterogeneous is not None:
            interest = interest + self.heterogeneous(target, states, mask)
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
    ``encoder_layers`` encoder layers (``EncoderLayer``; 0 = none), then a decoder from the target to the
    encoded behaviours: ``attention`` (multi-head, Table 5's "Trans"), ``kfatt_base`` or ``kfatt_freq`` (KFAtt).
    KFAtt-freq counts repeats on the behaviours' ids, so the copies of one item are one sensor.

    DPN's sequence-based DPO (App. B.4, Table 4): ``homogeneous`` adds the behaviour-behaviour DPO to each encoder
    layer's self-attention (eq. 15; ``encoder_attention: false`` leaves the DPO alone), ``heterogeneous`` adds
    the query-behaviour DPO of the target over the encoded behaviours to the decoder's output (eq. 16;
    ``decoder: null`` leaves the DPO alone). sDPN is both DPOs without attention."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        encoder_layers: int,
        attention_heads: int,
        dropout: float,
        decoder: Decoder | None,
        mlp_hidden: list[int],
        mlp_dropout: float,
        mlp_norm: Norm,
        mlp_activation: Activation,
        encoder_attention: bool = True,
        homogeneous: Mapping[str, Any] | None = None,
        heterogeneous: Mapping[str, Any] | None = None,
    ) -> None:
        if decoder is not None and decoder not in DECODERS:
            raise ValueError(f"model.decoder = {decoder!r} is not one of {list(DECODERS)} or null")
        if decoder is None and heterogeneous is None:
            raise ValueError("model.decoder = null needs model.heterogeneous: the decoder would be empty")
        if encoder_layers < 0:
            raise ValueError(f"model.encoder_layers = {encoder_layers} must be >= 0")
        if encoder_layers and not encoder_attention and homogeneous is None:
            raise ValueError(
                "model.encoder_attention = false needs model.homogeneous (or model.encoder_layers = 0): "
                "the encoder layers would have no token mixer"
            )
        name = "kfatt" if decoder in ("kfatt_base", "kfatt_freq") else "transformer"
        name = "sdpn" if decoder is None and not encoder_attention else name
        super().__init__(
            feature_map, embedding_dim, embedding_init_std, mlp_hidden, mlp_dropout, mlp_norm, mlp_activation, name
        )
        dim = self.inputs.behaviour_dim
        check_heads(dim, attention_heads)
        self.positions = RecencyPositions(feature_map.bag_len, dim) if encoder_layers else None
        self.encoder = nn.ModuleList(
            EncoderLayer(dim, attention_heads, dropout, encoder_attention, homogeneous_dpo(homogeneous, dim))
            for _ in range(encoder_layers)
        )
        self.decoder_kind = decoder
        if decoder is None:
            self.decoder = None
        elif decoder == "attention":
            self.decoder = MultiHeadAttention(dim, attention_heads)
        else:
            self.decoder = KalmanFilteringAttention(dim, attention_heads, frequency=decoder == "kfatt_freq")
        self.heterogeneous = heterogeneous_dpo(heterogeneous, dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        others, target, x, mask = self.inputs(batch)
        if self.positions is not None:
            x = self.positions(x, mask)
        for layer in self.encoder:
            x = layer(x, mask)
        interest = 0.0
        if self.decoder_kind == "attention":
            interest = self.decoder(target.unsqueeze(1), x, mask).squeeze(1)
        elif self.decoder_kind is not None:
            freq = self.decoder_kind == "kfatt_freq"
            counts = repeat_counts(self.inputs.behaviour_ids(batch), mask) if freq else None
            interest = self.decoder(target, x, mask, counts)
        if self.heterogeneous is not None:
            interest = interest + self.heterogeneous(target, x, mask)  # [B, D_b]
        return self.readout(others, interest)
