"""Shared fixtures (helpers live in tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch

from ctrlab.data import cache
from ctrlab.data.cache import SplitArrays
from ctrlab.data.schema import FeatureMap, Field
from tests.helpers import synthetic_source


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The learning tests train small models on small batches: a second intra-op thread buys little there and,
    on a loaded 2-core machine, costs a lot. Same threads for every test also keeps them reproducible."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_pairs(tmp_path_factory) -> tuple[FeatureMap, dict[str, SplitArrays]]:
    """16 fields, planted 2nd-order pairs only: FM-type models must beat LR clearly here."""
    folder = cache.prepare(synthetic_source(), tmp_path_factory.mktemp("cache"))
    return cache.load(folder)


@pytest.fixture(scope="session")
def synthetic_triples(tmp_path_factory) -> tuple[FeatureMap, dict[str, SplitArrays]]:
    """16 fields, planted 3rd-order triples dominate: higher-order models must beat FM here."""
    src = synthetic_source(name="test_triples", first_order_std=0.5, pair_std=0.3, triple_std=1.5)
    return cache.load(cache.prepare(src, tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_feature_map() -> FeatureMap:
    vocab = [5, 7, 3, 11, 4]
    return FeatureMap(
        dataset="tiny",
        fields=[Field(f"f{i}", v) for i, v in enumerate(vocab)],
        split_sizes={"train": 0, "valid": 0, "test": 0},
    )
