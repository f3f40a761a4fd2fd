"""The search -> re-train platform: the architecture artifact, SearchModule (joint, bi-level, best epoch, without
re-train), RetrainModule, random architectures, the stages command and its config checks. The searchable model
is the test double ``tests.searchable.PairGateTestModel``."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from ctrlab.data.datamodule import CTRDataModule
from ctrlab.data.schema import FeatureMap, Field
from ctrlab.lit.search import SearchModule, Temperature
from ctrlab.run_config import ConfigError, validate_run_config, validate_stages
from ctrlab.search.artifact import load_decisions, read_artifact
from ctrlab.search.space import SearchSpace
from ctrlab.search.stages import random_decisions
from ctrlab.train import train
from tests.helpers import run_module, synthetic_source
from tests.searchable import PairGateTestModel
from tests.test_train import make_cfg

OPTIMIZER = {
    "families": {
        "default": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-2},
        "arch": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 5e-2},
    }
}
TEST_MODEL = ["model=fm", "optimizer=adam_search", "model._target_=tests.searchable.PairGateTestModel",
              "debug=smoke", "data.num_rows=3000", "data.source.num_fields=5"]  # fmt: skip


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory) -> CTRDataModule:
    dm = CTRDataModule(synthetic_source(num_rows=4000, num_fields=5, num_pairs=4, num_triples=0),
                       str(tmp_path_factory.mktemp("cache")), batch_size=256, eval_batch_size=1000, seed=0)  # fmt: skip
    dm.prepare_data()
    dm.setup()
    return dm


def _model(fm: FeatureMap, **kw) -> PairGateTestModel:
    torch.manual_seed(0)
    return PairGateTestModel(fm, embedding_dim=4, embedding_init_std=0.1, **kw)


def _fit(module: SearchModule, dm: CTRDataModule, epochs: int = 1, **trainer_kw) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, **trainer_kw)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return trainer


def test_artifact_round_trip_and_refusal_of_other_fields(datamodule, tmp_path):
    module = SearchModule(_model(datamodule.feature_map), OPTIMIZER, artifact=str(tmp_path / "architecture.json"))
    _fit(module, datamodule, limit_train_batches=2)
    path = tmp_path / "architecture.json"
    artifact = read_artifact(path)
    assert artifact.provenance.data["fields"] == [f.name for f in datamodule.feature_map.fields]
    assert load_decisions(path, datamodule.feature_map) == module.best["decisions"]
    space = artifact.spaces[0]
    assert np.allclose(np.asarray(space.softmax), torch.tensor(space.weights).softmax(dim=1).numpy())
    # a model built from the artifact computes with exactly its decisions (eq. 19)
    rebuilt = _model(datamodule.feature_map, architecture=load_decisions(path, datamodule.feature_map))
    assert rebuilt.fixed[:, 0].tolist() == [float(d == "use") for d in space.decisions]

    other = FeatureMap("other", [Field(f"g{i}", 3) for i in range(5)], {"train": 0, "valid": 0, "test": 0})
    with pytest.raises(ValueError, match=r"fields only in the artifact: \['f0'.*only in the data: \['g0'"):
        load_decisions(path, other)
    stale = json.loads(path.read_text())
    stale["schema_version"] = 0
    (tmp_path / "old.json").write_text(json.dumps(stale))
    with pytest.raises(ValueError, match="schema_version 0"):
        load_decisions(tmp_path / "old.json", datamodule.feature_map)


def test_joint_search_updates_architecture_weights_on_training_batches(datamodule, tmp_path):
    module = SearchModule(_model(datamodule.feature_map), OPTIMIZER, artifact=str(tmp_path / "a.json"))
    before = module.model.alpha.detach().clone()
    _fit(module, datamodule, limit_train_batches=3)
    assert not torch.equal(before, module.model.alpha.detach())
    assert "arch" in module.optimizer_families


def test_bilevel_architecture_steps_see_only_valid_rows_and_no_test_row_before_the_test(datamodule, tmp_path):
    # tag each split in field 0 (id 0 train, 1 valid, 2 test) so that a batch tells where its rows come from
    for tag, split in enumerate(("train", "valid", "test")):
        datamodule.splits[split].ids = datamodule.splits[split].ids.copy()
        datamodule.splits[split].ids[:, 0] = tag
    seen: list[tuple[str, set[int]]] = []  # (who, split tags), in call order

    class Spy(SearchModule):
        def _arch_step(self, batch, optimizers):
            seen.append(("arch", set(batch["ids"][:, 0].tolist())))
            return super()._arch_step(batch, optimizers)

        def _descend(self, batch, optimizers):
            seen.append(("step", set(batch["ids"][:, 0].tolist())))
            return super()._descend(batch, optimizers)

        def _eval_step(self, batch, stage):
            seen.append((stage, set(batch["ids"][:, 0].tolist())))
            super()._eval_step(batch, stage)

    module = Spy(_model(datamodule.feature_map), OPTIMIZER, mode="bilevel", artifact=str(tmp_path / "a.json"))
    alpha = module.model.alpha.detach().clone()
    trainer = _fit(module, datamodule, epochs=2, limit_train_batches=4)
    fit_calls = len(seen)
    trainer.test(module, datamodule=datamodule, verbose=False)
    arch_batches = [tags for i, (who, tags) in enumerate(seen) if who == "step" and seen[i - 1][0] == "arch"]
    assert len(arch_batches) == 8 and all(tags == {1} for tags in arch_batches)  # one per training batch
    weight_batches = [tags for i, (who, tags) in enumerate(seen) if who == "step" and seen[i - 1][0] != "arch"]
    assert len(weight_batches) == 8 and all(tags == {0} for tags in weight_batches)
    assert all(2 not in tags for _, tags in seen[:fit_calls])
    assert all(tags == {2} for who, tags in seen[fit_calls:] if who == "test")
    assert not torch.equal(alpha, module.model.alpha.detach())  # the architecture did move


def test_artifact_holds_the_best_validation_epoch_not_the_last(datamodule, tmp_path):
    class Scripted(SearchModule):
        """Validation AUC scripted per epoch: best at epoch 1 of 3."""

        def _eval_epoch_end(self, stage):
            values = super()._eval_epoch_end(stage)
            return {**values, "val/auc": torch.tensor([0.6, 0.9, 0.7][self.current_epoch])}

    module = Scripted(_model(datamodule.feature_map), OPTIMIZER, artifact=str(tmp_path / "a.json"))
    alphas = []

    class Snapshot(pl.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            alphas.append(pl_module.model.alpha.detach().clone())

    _fit(module, datamodule, epochs=3, limit_train_batches=3, callbacks=[Snapshot()])
    artifact = read_artifact(tmp_path / "a.json")
    assert artifact.provenance.epoch == 1 and artifact.provenance.val_metrics["val/auc"] == pytest.approx(0.9)
    assert torch.allclose(torch.tensor(artifact.spaces[0].weights), alphas[1])
    assert not torch.allclose(alphas[1], alphas[2])


def test_temperature_schedules():
    assert Temperature(anneal="linear", tau0=1.0, tau_min=0.01, rate=5e-5).at(10_000) == pytest.approx(0.5)
    assert Temperature(anneal="linear", tau0=1.0, tau_min=0.01, rate=5e-5).at(10**6) == 0.01
    assert Temperature(anneal="exponential", tau0=2.0, tau_min=0.1, rate=0.5).at(2) == pytest.approx(2 * np.exp(-1))
    assert Temperature(anneal="constant", tau0=0.3).at(99) == 0.3


def test_search_run_reports_without_retrain_scores_and_retrain_records_the_artifact(tmp_path):
    search = train(make_cfg(tmp_path / "s", [*TEST_MODEL, "module=search", "trainer.max_epochs=2"]))
    artifact = search["architecture"]["path"]
    for key in ("val/auc", "test/auc", "without_retrain/val/auc", "without_retrain/test/auc"):
        assert 0.0 < search[key] < 1.0, key
    assert sum(search["architecture"]["counts"]["pair"].values()) == 10  # 5 fields: 10 pairs
    retrain = train(make_cfg(tmp_path / "r", [*TEST_MODEL, "module=retrain", f"+model.architecture={artifact}"]))
    assert retrain["architecture"]["path"] == artifact
    assert retrain["architecture"]["counts"] == search["architecture"]["counts"]
    assert retrain["architecture"]["sha256"] == search["architecture"]["sha256"]


def test_random_architecture_is_seeded_and_uniform():
    space = SearchSpace("pair", tuple(f"u{i}" for i in range(3000)), ("memorize", "factorize", "naive"))
    first, again, other = (random_decisions([space], s)["pair"] for s in (3, 3, 4))
    assert first == again and first != other
    counts = Counter(first)
    assert all(abs(counts[o] - 1000) < 100 for o in space.options)  # 3 sigma ~ 78


def test_config_errors_name_key_value_and_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match=r"`module.mode` = 'both'.*'joint' or 'bilevel'"):
        validate_run_config(make_cfg(tmp_path, [*TEST_MODEL, "module=search", "module.mode=both"]))
    with pytest.raises(ConfigError, match=r"`module.temperature.tau0` = -1.0.*greater than 0"):
        validate_run_config(make_cfg(tmp_path, [*TEST_MODEL, "module=search", "module.temperature.tau0=-1.0"]))
    with pytest.raises(ConfigError, match=r"`model.architecture` = 'nowhere.json'"):
        validate_run_config(make_cfg(tmp_path, [*TEST_MODEL, "module=retrain", "+model.architecture=nowhere.json"]))
    with pytest.raises(ConfigError, match=r"`stages.0.kind` = 'grid'.*'train' or 'random'"):
        validate_stages(make_cfg(tmp_path, ["+stages=[{name: a, kind: grid}]"]))
    with pytest.raises(ConfigError, match=r"stage names must be unique"):
        validate_stages(make_cfg(tmp_path, ["+stages=[{name: a}, {name: a}]"]))


@pytest.mark.slow
def test_stages_chain_and_a_second_run_reuses_them(tmp_path):
    args = [*TEST_MODEL, "trainer.max_epochs=2", f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip

    def summary() -> dict:
        done = run_module("ctrlab.search", *args, env={"OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        newest = sorted((tmp_path / "logs" / "search" / "runs").iterdir())[-1]
        return json.loads((newest / "summary.json").read_text())

    first = summary()
    search, retrain = first["stages"]
    assert [search["reused"], retrain["reused"]] == [False, False]
    assert retrain["artifact"] == search["artifact"] == first["final_artifact"]
    assert retrain["counts"] == search["counts"]
    searched = read_artifact(search["artifact"])
    second = summary()
    assert [s["reused"] for s in second["stages"]] == [True, True]
    assert [s["folder"] for s in second["stages"]] == [s["folder"] for s in first["stages"]]
    assert read_artifact(search["artifact"]) == searched
