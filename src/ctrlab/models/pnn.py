"""Product-based neural networks: a product layer over the field embeddings, then an MLP.

    IPNN, OPNN, PNN (Qu et al. 2016, "Product-based Neural Networks for User Response Prediction", ICDM):
        l_1 = ReLU(W_z z + W_p p + b_1),  z = [f_1, ..., f_F] (the linear signal),  p = the product signal:
        IPNN: inner products <f_i, f_j> of all pairs;  OPNN: f_Σ f_Σ^T (sum-pooled outer products);
        PNN: both, as DynInt's "PNN (with both inner product layer and outer product layer)" (PNN*).
        One class, ``PNN``, with two switches; configs ipnn / opnn / pnn set them.
    PIN (Qu et al. 2019, "Product-based Neural Networks for User Response Prediction over Multi-field
    Categorical Data", ACM TOIS): p = the outputs of one micro-network per field pair on
    [f_i, f_j, f_i ⊙ f_j].

``architecture`` (PNN / IPNN / OPNN): an AIM interaction-function artifact's decisions add its kept (interaction,
function) terms as one more product signal (AIM Table 10, "PNN+IF").

W_z z + W_p p over the concatenation [z, p] is exactly the MLP's first Linear layer, so every model here is
``MLP([z, p_1, ..., p_k])``. ``mlp_hidden: null`` leaves the product layer feeding a single linear output
(the "interaction layer only" variant of DynInt Table 2).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.aim import transfer_interactions
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.nn.pin_network import PairSubNetworks
from ctrlab.nn.product import InnerProduct, OuterProduct
from ctrlab.search.space import Decisions


class ProductBasedNetwork(CTRModel):
    """``MLP([z, p_1(f), ..., p_k(f)])`` for the given product layers (each with ``out_features``)."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        products: list[nn.Module],
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(feature_map, embedding_dim, embedding_init_std)
        self.products = nn.ModuleList(products)
        in_dim = feature_map.num_fields * embedding_dim + sum(p.out_features for p in products)
        self.mlp = MLP(in_dim, mlp_hidden or [], 1, mlp_dropout, mlp_norm)  # [] -> one Linear to the logit

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)  # f [B, F, D]
        signals = [emb.flatten(1)] + [product(emb) for product in self.products]  # z [B, F*D], p_k [B, ...]
        return self.mlp(torch.cat(signals, dim=1)).squeeze(-1)  # [B]


class PNN(ProductBasedNetwork):
    """IPNN (``inner_product`` only), OPNN (``outer_product`` only) or PNN* (both), by the two switches."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        inner_product: bool,
        outer_product: bool,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
        architecture: str | Decisions | None = None,
        architecture_weights: dict[str, Any] | None = None,
    ) -> None:
        products: list[nn.Module] = []
        if inner_product:
            products.append(InnerProduct(feature_map.num_fields))
        if outer_product:
            products.append(OuterProduct(embedding_dim))
        if not products:
            raise ValueError("PNN needs inner_product, outer_product or both")
        if architecture is not None:
            products.append(transfer_interactions(feature_map, architecture, architecture_weights, embedding_dim))
        super().__init__(feature_map, embedding_dim, embedding_init_std, products, mlp_hidden, mlp_dropout, mlp_norm)


class ProductNetworkInNetwork(ProductBasedNetwork):
    """PIN. Not xDeepInt's Polynomial Interaction Network, which shares the acronym.

    As in the authors' released code (``wide = True``), the embeddings z are concatenated with the
    micro-network outputs before the MLP.
    """

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dim: int,
        embedding_init_std: float,
        subnet_hidden: list[int],
        subnet_norm: Literal["none", "layer"],
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
    ) -> None:
        products = [PairSubNetworks(feature_map.num_fields, embedding_dim, subnet_hidden, subnet_norm)]
        super().__init__(feature_map, embedding_dim, embedding_init_std, products, mlp_hidden, mlp_dropout, mlp_norm)
