"""The schema of a composed run config, checked before any work (docs/architecture.md, "Configs").

A wrong value must stop a run at its start, naming the key, the value and what is allowed — not after the data
is built, and never by "completing" an untrained model (``data.batch_size=-5`` used to end with
``global_step: 0`` and ``status: completed``). Three layers, each stating a rule once:

- ``RunKeys``, ``DataKeys``, ``TrainerKeys``: pydantic models of the keys ctrlab itself reads (the run's top
  level, ``data.*`` and the subset of Lightning's ``Trainer`` arguments the configs use), with types and ranges.
  Other keys pass through untouched: a trainer config may set any ``Trainer`` argument.
- ``ModelKeys``: the model contract shared by every model config (embedding size, MLP shape, dropout rates).
- the constructor of ``data.source._target_`` and ``model._target_``: every other key of those groups must be
  one of its parameters and of its annotated type (the signature is the single statement of what a source or
  model takes; the readers' own range checks then run when the source is built, still before any work).
"""

from __future__ import annotations

import importlib
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ctrlab.search.artifact import is_artifact_path


class ConfigError(ValueError):
    """A configuration problem, reported with the key at fault."""


Positive = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Batches = Annotated[int, Field(ge=0)] | Fraction  # Lightning: an int counts batches, a float is a fraction


class _Keys(BaseModel):
    # strict on types (no "3" -> 3 from a string), open to keys this schema does not name
    model_config = ConfigDict(extra="allow", strict=True)


class InferenceTiming(_Keys):
    """``inference_timing`` (null: none): time the trained model on this many test rows in batches of this size
    (AIM §4.5, ``ctrlab.lit.timing``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    samples: Positive
    batch_size: Positive


class RunKeys(_Keys):
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]
    test: bool = True
    ckpt_path: str | None = None
    task_name: str
    tags: list[str] = []
    monitor: Literal["auc", "logloss", "auc_minus_logloss"] = "auc"
    standin: Literal["interactions", "dynamic", "memorize", "functions", "context"] = "interactions"
    compile: bool = False
    inference_timing: dict[str, Any] | None = None  # ctrlab.lit.timing, its keys checked by InferenceTiming


class RareValueGroupKeys(_Keys):
    field: str
    fewer_than: Positive


class DataKeys(_Keys):
    batch_size: Positive
    eval_batch_size: Positive
    num_rows: Positive | None = None
    paper_dataset: str
    test_group: RareValueGroupKeys | None = None  # score the test split on one group only (data/datamodule.py)

    resident: Literal["auto", "host", "device", "pinned"] = "auto"


class TrainerKeys(_Keys):
    accelerator: str = "cpu"
    max_epochs: Annotated[int, Field(ge=-1)] | None = None  # -1: no limit
    min_epochs: Annotated[int, Field(ge=0)] | None = None
    max_steps: Annotated[int, Field(ge=-1)] = -1
    check_val_every_n_epoch: Positive | None = 1
    val_check_interval: Positive | Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    log_every_n_steps: Positive | None = None
    limit_train_batches: Batches | None = None
    limit_val_batches: Batches | None = None
    limit_test_batches: Batches | None = None
    num_sanity_val_steps: Annotated[int, Field(ge=-1)] | None = None
    gradient_clip_val: Annotated[float, Field(ge=0.0)] | None = None
    deterministic: bool | Literal["warn"] | None = None
    enable_progress_bar: bool | None = None


class ModelKeys(_Keys):
    embedding_dim: Positive | None = None
    embedding_init_std: Annotated[float, Field(gt=0.0)] | None = None
    mlp_hidden: list[Positive] | None = None
    mlp_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    num_subspaces: Positive | None = None
    num_layers: Annotated[int, Field(ge=0)] | None = None  # DynInt Table 3 runs 0 PIN layers


class StageKeys(_Keys):
    """One stage of ``python -m ctrlab.search`` (``configs/search.yaml``): a run with these overrides, or a
    random draw of an architecture."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]
    kind: Literal["train", "random"] = "train"
    overrides: list[str] = []


class ChainKeys(_Keys):
    stages: Annotated[list[StageKeys], Field(min_length=1)]
    fresh: bool = False

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[StageKeys]) -> list[StageKeys]:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique (they name the folders), got {names}")
        return stages


def validate_stages(cfg: DictConfig) -> None:
    """Check ``stages`` and ``fresh`` of a ``python -m ctrlab.search`` config; ``ConfigError`` names the key."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    try:
        ChainKeys.model_validate({k: plain.get(k) for k in ("stages", "fresh") if k in plain})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        value = first["input"] if first["type"] != "missing" else "(not set)"
        raise ConfigError(f"config key `{key}` = {value!r}: {first['msg']}") from None


def validate_run_config(cfg: DictConfig, model_context: str = "") -> None:
    """Check the resolved run config against the schema; raise ``ConfigError`` naming the first bad key.

    ``model_context`` (e.g. ``model=xdeepint with ablation=interaction_only``) starts the message of a model key's
    error, so that a bundle that sets a key on a model without that part says which model and which bundle."""
    check_paper_setting(cfg)  # before resolving: its `column` would fail there without naming the columns
    plain = OmegaConf.to_container(cfg, resolve=True)
    _check(RunKeys, {k: v for k, v in plain.items() if k in RunKeys.model_fields}, "")
    if plain.get("inference_timing") is not None:
        _check(InferenceTiming, plain["inference_timing"], "inference_timing.")
    _check(DataKeys, plain.get("data") or {}, "data.")
    _check(TrainerKeys, plain.get("trainer") or {}, "trainer.")
    _check(ModelKeys, plain.get("model") or {}, "model.")
    _check_against_constructor(plain["data"].get("source") or {}, "data.source.")
    _check_against_constructor(plain.get("model") or {}, "model.", skip=("feature_map",), context=model_context)
    # the module's own keys (module=search: mode, temperature, ...); train.py passes the other four
    given_by_train = ("model", "optimizer", "config", "feature_map")
    _check_against_constructor(plain.get("module") or {}, "module.", skip=given_by_train)
    architecture = (plain.get("model") or {}).get("architecture")
    if is_artifact_path(architecture) and not Path(architecture).is_file():
        raise ConfigError(
            f"config key `model.architecture` = {architecture!r}: no such architecture artifact (a search stage "
            "writes architecture.json in its run folder); or give an option name of the model's space"
        )
    ckpt = plain.get("ckpt_path")
    if ckpt is not None and not Path(ckpt).is_file():
        raise ConfigError(f"config key `ckpt_path` = {ckpt!r}: no such checkpoint file")


def check_paper_setting(cfg: DictConfig) -> None:
    """A paper's setting (``paper_setting=optinter``: its table of hyper-parameters, one column per dataset) needs a
    column for the run's ``data.paper_dataset``; ``ConfigError`` names the key, its value and the columns."""
    setting = cfg.get("paper_setting")
    if setting is None:
        return
    columns = [k for k in setting if k != "column"]  # `column` is the run's own, selected by data.paper_dataset
    dataset = cfg.data.paper_dataset
    if dataset not in columns:
        raise ConfigError(
            f"config key `data.paper_dataset` = {dataset!r}: the paper's setting (`paper_setting`, "
            f"configs/paper_setting/) has no column for it; allowed: {', '.join(columns)}"
        )


def _check(schema: type[BaseModel], values: dict[str, Any], prefix: str) -> None:
    try:
        schema.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_describe(err, prefix, named=True)) from None


def _describe(err: ValidationError, prefix: str, named: bool) -> str:
    """The first error as 'config key `k` = value: what is allowed' (a union lists each alternative).
    ``named``: the error locations start with a field of a (flat) schema, else with the value itself."""
    first = err.errors()[0]
    key = ".".join([prefix.rstrip("."), *(str(p) for p in _key_of(first, named))]).strip(".")
    options = sorted({e["msg"] for e in err.errors() if _key_of(e, named) == _key_of(first, named)})
    return f"config key `{key}` = {first['input']!r}: {' or '.join(options)}"


def _key_of(error: dict[str, Any], named: bool) -> tuple:
    """Where in the config an error is: the schema's field (``named``), then list positions. pydantic also puts
    the alternative of a union in the location, e.g. ('max_epochs', 'constrained-int'); those are dropped."""
    loc = error["loc"]
    head, rest = (loc[:1], loc[1:]) if named else ((), loc)
    return (*head, *(p for p in rest if isinstance(p, int)))


def _check_against_constructor(
    values: dict[str, Any], prefix: str, skip: tuple[str, ...] = (), context: str = ""
) -> None:
    """Every key of a ``_target_`` group is a parameter of the target's constructor, of its annotated type, and
    null only where the constructor takes None."""
    target = values.get("_target_")
    if target is None:
        return
    cls = _import(target, prefix)
    params = {name: p for name, p in inspect.signature(cls).parameters.items() if name not in skip}
    hints = typing.get_type_hints(cls.__init__)
    lead = f"{context}: " if context else ""
    for key, value in values.items():
        if key.startswith("_"):  # _target_, _partial_: Hydra's
            continue
        if key not in params:
            raise ConfigError(
                f"{lead}{cls.__name__} has no argument `{prefix}{key}` (it takes: "
                f"{', '.join(params) or 'none'}), so there is nothing there to set or ablate"
            )
        if key not in hints:
            continue
        if value is None and type(None) not in typing.get_args(hints[key]):
            raise ConfigError(
                f"{lead}`{prefix}{key}` cannot be null, {cls.__name__} needs a "
                f"{_type_name(hints[key])} there: it cannot run without that part"
            )
        types = (hints[key], *typing.get_args(hints[key]))
        block = [t for t in types if isinstance(t, type) and issubclass(t, BaseModel)]
        if block and isinstance(value, dict):  # a block of keys, e.g. module.temperature: its fields by name
            _check(block[0], value, f"{prefix}{key}.")
            continue
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=not isinstance(value, list))
        except ValidationError as err:
            raise ConfigError(lead + _describe(err, f"{prefix}{key}", named=False)) from None
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    missing = [n for n, p in params.items() if p.default is p.empty and p.kind not in variadic and n not in values]
    if missing:
        raise ConfigError(f"{lead}config key `{prefix}{missing[0]}` is required by {target} but not set")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) if not typing.get_args(annotation) else str(annotation)


def _import(target: str, prefix: str) -> Any:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"config key `{prefix}_target_` = {target!r}: no such class") from None
