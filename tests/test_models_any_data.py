"""Every model config runs on every kind of data the datasets produce: categorical and numeric (scaled)
fields, multi-valued and sequence fields (bags, pooled), and cross features where a model asks for them.
Each data config's own reader tests train end to end on a file in its real format; this test covers the
model side of that promise for all models at once."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ctrlab.data.schema import FeatureMap, Field
from ctrlab.lit.module import training_loss
from tests.helpers import ROOT

MODELS = sorted(
    str(p.relative_to(ROOT / "configs" / "model").with_suffix("")) for p in (ROOT / "configs" / "model").rglob("*.yaml")
)


def rich_feature_map() -> FeatureMap:
    """Like MovieLens-1M / Amazon / OptInter's Criteo at once: 2 categorical, 1 numeric, 2 bags (one sharing
    the item field's vocabulary), and 1 cross."""
    fields = [
        Field("item", 9),
        Field("user", 6),
        Field("count", 3, kind="numeric"),
        Field("hist_item", 9, kind="sequence", max_len=5, shares="item"),
        Field("genres", 7, kind="multi", max_len=3),
    ]
    return FeatureMap(
        "rich",
        fields,
        {"train": 0, "valid": 0, "test": 0},
        has_values=True,
        cross_fields=[Field("itemxuser", 12)],
        cross_pairs=[(0, 1)],
    )


def rich_batch(batch_size: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    bags = torch.stack(
        [
            torch.randint(0, 9, (batch_size, 5), generator=g),
            torch.nn.functional.pad(torch.randint(0, 7, (batch_size, 3), generator=g), (0, 2)),
        ],
        dim=1,
    )
    bags[0] = 0  # an example with empty bags
    return {
        "ids": torch.stack([torch.randint(0, v, (batch_size,), generator=g) for v in (9, 6, 3)], dim=1),
        "values": torch.cat([torch.ones(batch_size, 2), torch.rand(batch_size, 1, generator=g)], dim=1),
        "bag_ids": bags,
        "bag_lengths": (bags != 0).sum(-1),
        "cross_ids": torch.randint(0, 12, (batch_size, 1), generator=g),
        "label": torch.randint(0, 2, (batch_size,), generator=g).float(),
    }


@pytest.mark.parametrize("model", MODELS)
def test_model_trains_a_step_on_every_kind_of_field(model):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}"])
    if cfg.model.get("context_fields"):  # DPN rows name their data's fields (tag, Genres): one of this map's
        cfg.model.context_fields = ["genres"]
    torch.manual_seed(0)
    net = instantiate(cfg.model, _partial_=True)(feature_map=rich_feature_map())
    batch = rich_batch()
    logits = net(batch)
    assert logits.shape == (6,) and torch.isfinite(logits).all()
    bce, terms = training_loss(net, batch)
    loss = bce + sum(terms.values())
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
