"""The sources' shared recipe contract (ctrlab.data.checks): every real data config passes the run schema (the
source's dataclass fields), builds a frozen source, and gives a cache key of every field but the unkeyed ones, as
plain JSON values whether Hydra or a caller built the source."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hydra.utils import instantiate

from ctrlab.data.avazu import AvazuSource
from ctrlab.data.checks import recipe_key
from ctrlab.run_config import ConfigError, validate_run_config
from tests.test_train import make_cfg

LOCATION = {  # data config -> the key of its raw data's location
    **{name: "path" for name in ("criteo", "criteo_optinter", "criteo_aim", "criteo_dpn")},
    **{name: "path" for name in ("avazu", "avazu_optinter", "avazu_aim", "avazu_dpn")},
    **{name: "root" for name in ("ipinyou", "ipinyou_optinter", "movielens_1m", "movielens_tag", "frappe")},
    "amazon_electronics": "root",
    "synthetic_sequence": None,
}


@pytest.mark.parametrize("data", list(LOCATION))
def test_every_reader_config_passes_the_run_schema_and_builds_a_frozen_source(tmp_path, data):
    where = [f"data.source.{LOCATION[data]}={tmp_path}/raw"] if LOCATION[data] else []
    cfg = make_cfg(tmp_path, [f"data={data}", *where])
    validate_run_config(cfg)
    source = instantiate(cfg.data.source)
    assert dataclasses.is_dataclass(source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.seed = 1  # the cache key is read from the fields: they cannot change after the checks
    with pytest.raises(ConfigError, match=r"has no argument `data\.source\.typo`"):
        validate_run_config(make_cfg(tmp_path, [f"data={data}", *where, "+data.source.typo=1"]))


def test_recipe_key_is_every_field_but_the_unkeyed_ones_as_plain_values(tmp_path):
    cfg = make_cfg(tmp_path, ["data=avazu_optinter", f"data.source.path={tmp_path}/train.csv"])
    from_hydra = instantiate(cfg.data.source)  # lists arrive as ListConfig
    key = recipe_key(from_hydra)
    fields = {f.name for f in dataclasses.fields(AvazuSource)}
    assert set(key) == fields - {"path", "chunk_rows"}  # the path enters cache_key() as its file's fingerprint
    assert key["time_fields"] == ["day", "hour_of_day", "weekday"] and key["split"] == [0.8, 0.2]
    assert json.loads(json.dumps(key)) == key  # plain JSON values, not the str() of a ListConfig
    by_hand = dataclasses.replace(from_hydra, time_fields=("day", "hour_of_day", "weekday"), split=(0.8, 0.2))
    assert recipe_key(by_hand) == key
    assert recipe_key(dataclasses.replace(from_hydra, chunk_rows=7, path="elsewhere.csv")) == key
    assert recipe_key(dataclasses.replace(from_hydra, min_count=6)) != key


UNSET = [("criteo", "CRITEO="), ("avazu", "AVAZU="), ("ipinyou", "IPINYOU="), ("amazon_electronics", "AMAZON=")]


@pytest.mark.parametrize(("data", "how"), UNSET)
def test_an_unset_raw_data_location_is_refused_naming_its_variable(tmp_path, data, how):
    key = LOCATION[data]
    source = instantiate(make_cfg(tmp_path, [f"data={data}", f"data.source.{key}={tmp_path}/raw"]).data.source)
    with pytest.raises(ValueError, match=rf"data\.source\.{key} is not set: {how}"):
        dataclasses.replace(source, **{key: "???"})  # Hydra's value of an unset ${oc.env:...,???}
