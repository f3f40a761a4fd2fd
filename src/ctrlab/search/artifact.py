"""The architecture artifact ``architecture.json``: what a search stage decided, and where it came from.

A search stage writes it at its end from the epoch with the best validation monitor (never test); a random
draw (OptInter Table VIII) writes the same schema. A re-train reads it with ``load_decisions``, which checks the
schema version and that the artifact was made on data with the same fields, so an artifact can go to another
model or dataset of the same fields (AIM Table 10) but never silently to other fields.

Schema (version ``SCHEMA_VERSION``)::

    {"schema_version": 1,
     "spaces": [{"name", "units", "options", "subset", "decisions", "weights", "softmax"}, ...],
     "provenance": {"kind": "search" | "random", "model": {"config", "target"},
                    "data": {"cache", "dataset", "fields"}, "seed", "config", "val_metrics", "epoch", "note"}}

``weights`` are the raw architecture weights (``[U, K]`` or ``[U]``) and ``softmax`` their softmax over the
options (``[U, K]`` only; null otherwise).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ctrlab.data.schema import FeatureMap
from ctrlab.search.space import Decisions, SearchSpace

SCHEMA_VERSION = 1
FILENAME = "architecture.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceRecord(_Strict):
    """One space of the model: its units, options, one decision per unit and the weights behind them."""

    name: str
    units: list[str]
    options: list[str]
    subset: bool = False
    decisions: list[Any]
    weights: list[Any] | None = None  # [U, K] or [U]; None for a random draw
    softmax: list[list[float]] | None = None  # [U, K]: softmax of `weights` over the options

    @model_validator(mode="after")
    def _one_decision_per_unit(self) -> SpaceRecord:
        if len(self.decisions) != len(self.units):
            raise ValueError(f"space {self.name!r}: {len(self.decisions)} decisions for {len(self.units)} units")
        if not self.subset and (bad := [d for d in self.decisions if d not in self.options]):
            raise ValueError(f"space {self.name!r}: decisions {bad[:3]} are not among its options {self.options}")
        return self


class Provenance(_Strict):
    kind: Literal["search", "random"]
    model: dict[str, Any]  # {"config": model config name, "target": _target_}
    data: dict[str, Any]  # {"cache": cache folder name (its hash), "dataset", "fields": [names]}
    seed: int | None
    config: dict[str, Any] | None = None  # the search run's resolved config
    val_metrics: dict[str, float] = {}  # of the epoch the decisions were derived at
    epoch: int | None = None
    note: str = ""  # e.g. "random, seed 3"


class Artifact(_Strict):
    schema_version: int
    spaces: list[SpaceRecord]
    provenance: Provenance

    def decisions(self) -> Decisions:
        return {s.name: list(s.decisions) for s in self.spaces}

    def weights(self) -> dict[str, list[Any]]:
        """The raw architecture weights per space that has them (AIM / AutoFIS's higher orders rank by them)."""
        return {s.name: list(s.weights) for s in self.spaces if s.weights is not None}

    def counts(self) -> dict[str, dict[str, int]]:
        """How many units took each option, per space (a subset decision counts each option it keeps)."""
        return decision_counts(self.decisions(), {s.name: s.options for s in self.spaces})


def decision_counts(decisions: Decisions, options: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """Units per option per space, every option listed (0 when no unit took it)."""
    counts = {}
    for name, units in decisions.items():
        chosen = [o for d in units for o in (d if isinstance(d, list) else [d])]
        counts[name] = {str(o): chosen.count(o) for o in options.get(name, sorted(set(map(str, chosen))))}
    return counts


def space_record(space: SearchSpace, decisions: list[Any], weights: torch.Tensor | None) -> SpaceRecord:
    """A space's entry in the artifact; ``weights`` [U, K] also get their softmax over the options."""
    w = weights.detach().float().cpu() if weights is not None else None
    return SpaceRecord(
        name=space.name,
        units=list(space.units),
        options=list(space.options),
        subset=space.subset,
        decisions=list(decisions),
        weights=w.tolist() if w is not None else None,
        softmax=w.softmax(dim=-1).tolist() if w is not None and w.dim() == 2 else None,
    )


def write_artifact(path: str | Path, artifact: Artifact) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")  # renamed into place: a reader never sees half a file
    tmp.write_text(json.dumps(artifact.model_dump(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_artifact(path: str | Path) -> Artifact:
    """The artifact at ``path``, its schema checked; the message names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"architecture artifact {path} does not exist (a search stage writes {FILENAME})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"architecture artifact {path} is not JSON: {err}") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"architecture artifact {path} has schema_version {version!r}; this ctrlab reads version "
            f"{SCHEMA_VERSION}: search again to write a current one"
        )
    try:
        return Artifact.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"architecture artifact {path}: `{where}`: {first['msg']}") from None


def load_decisions(path: str | Path, feature_map: FeatureMap) -> Decisions:
    """The decisions of the artifact at ``path``, checked against the data as ``load_artifact``."""
    return load_artifact(path, feature_map).decisions()


def load_artifact(path: str | Path, feature_map: FeatureMap) -> Artifact:
    """The artifact at ``path``, after checking that it was made on data with the fields of ``feature_map`` (same
    names, same order): unit names such as field pairs only mean something there."""
    artifact = read_artifact(path)
    theirs = list(artifact.provenance.data.get("fields") or [])
    ours = [f.name for f in feature_map.fields]
    if theirs != ours:
        only_theirs = [f for f in theirs if f not in ours]
        only_ours = [f for f in ours if f not in theirs]
        what = (
            f"fields only in the artifact: {only_theirs}; only in the data: {only_ours}"
            if only_theirs or only_ours
            else "the same fields in another order"
        )
        raise ValueError(
            f"architecture artifact {path} was searched on dataset {artifact.provenance.data.get('dataset')!r} "
            f"with {len(theirs)} fields, this run's data {feature_map.dataset!r} has {len(ours)} ({what}); "
            "search on this data first, or give `model.architecture` an artifact of a dataset with these fields"
        )
    return artifact


def is_artifact_path(architecture: Any) -> bool:
    """Whether a ``model.architecture`` value names an artifact file (``*.json``) rather than an option name."""
    return isinstance(architecture, str | Path) and str(architecture).endswith(".json")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
