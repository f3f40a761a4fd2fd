"""Stages as one command: ``python -m ctrlab.search`` runs the ``stages`` of ``configs/search.yaml`` in order.

Each stage is a normal run of ``ctrlab.train.train`` (its own folder with config, checkpoints, ``metrics.json``)
composed from ``configs/train.yaml`` with the command line's overrides plus the stage's own (``module=search``,
``module=retrain``, ...), or a random draw (``kind: random``, OptInter Table VIII). The artifact a stage writes
(``architecture.json`` in its folder) becomes the next stage's ``model.architecture``, so N stages chain (AIM
has three). This command's own folder gets ``summary.json`` and ``summary.md``.

Reuse: a stage's folder is ``<paths.log_dir>/stages/<name>-<hash>``, ``hash`` the SHA-256 of the stage's
resolved config without ``paths`` (where things are written and read from, not what is computed) plus its
kind. The previous stage's artifact path is in ``model.architecture``, so a changed search changes every later
hash. A folder whose ``stage.json`` says ``completed`` is reused as it is; ``fresh=true`` runs every stage again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from ctrlab.lit.module import build_model
from ctrlab.run_config import validate_stages
from ctrlab.search.artifact import (
    FILENAME,
    SCHEMA_VERSION,
    Artifact,
    Provenance,
    file_sha256,
    space_record,
    write_artifact,
)
from ctrlab.search.recovery import recovery
from ctrlab.search.space import Decisions, SearchableModel, SearchSpace
from ctrlab.train import _choices, _paper_row, build_datamodule, check_config, train
from ctrlab.utils import write_json

log = logging.getLogger("ctrlab.search")

# keys of configs/search.yaml that are about the chain, not about a stage's run
CHAIN_KEYS = ("search", "stages", "fresh", "hydra")
SUMMARY_KEYS = ("val/auc", "val/logloss", "test/auc", "test/logloss", "without_retrain/val/auc",
                "without_retrain/test/auc")  # fmt: skip


def random_decisions(spaces: list[SearchSpace], seed: int) -> Decisions:
    """Each unit's option drawn uniformly (a subset space: each option kept with probability 1/2), seeded."""
    rng = np.random.default_rng(seed)
    decisions: Decisions = {}
    for space in spaces:
        if space.subset:
            keep = rng.random((len(space.units), len(space.options))) < 0.5
            decisions[space.name] = [[o for o, k in zip(space.options, row, strict=True) if k] for row in keep]
        else:
            decisions[space.name] = [space.options[k] for k in rng.integers(len(space.options), size=len(space.units))]
    return decisions


def draw_random(cfg: DictConfig, folder: Path) -> dict[str, Any]:
    """A random architecture of ``cfg.model`` on ``cfg.data`` (seed ``cfg.seed``), written as an artifact into
    ``folder``; returns the stage's metrics (the artifact, and its planted-truth recovery on a stand-in)."""
    check_config(cfg)
    datamodule = build_datamodule(cfg)
    fm = datamodule.feature_map
    model = build_model(cfg.model, fm)
    if not isinstance(model, SearchableModel):
        raise TypeError(f"a random architecture needs a searchable model; {type(model).__name__} is not one")
    decisions = random_decisions(model.search_spaces(), cfg.seed)
    artifact = Artifact(
        schema_version=SCHEMA_VERSION,
        spaces=[space_record(s, decisions[s.name], None) for s in model.search_spaces()],
        provenance=Provenance(
            kind="random",
            model={"config": _choices().get("model"), "target": cfg.model._target_},
            data={"cache": datamodule.folder.name, "dataset": fm.dataset, "fields": [f.name for f in fm.fields]},
            seed=cfg.seed,
            config=OmegaConf.to_container(cfg, resolve=True),
            note=f"random, seed {cfg.seed}",
        ),
    )
    path = write_artifact(folder / FILENAME, artifact)
    drawn = {"path": str(path), "sha256": file_sha256(path), "counts": artifact.counts()}
    return {"status": "completed", "seed": cfg.seed, "architecture": drawn, "recovery": recovery(artifact, fm)}


def stage_hash(cfg: DictConfig, kind: str) -> str:
    """What decides that two stages are the same: the resolved config without ``paths``, and the kind."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("paths", None)
    text = json.dumps({"kind": kind, "config": plain}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~").split(".", 1)[0].split("@", 1)[0]


def _compose_stage(overrides: list[str]) -> DictConfig:
    """``configs/train.yaml`` with these overrides, as ``python -m ctrlab.train`` would compose it; the Hydra
    config (group choices) is made current, so the run records its own choices (``module=retrain``)."""
    cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_stages(cfg: DictConfig, store: Path | None = None) -> dict[str, Any]:
    """Run (or reuse) every stage of ``cfg.stages`` in folders under ``store`` (default
    ``<paths.log_dir>/stages``); write and return the summary."""
    validate_stages(cfg)
    outer = HydraConfig.instance().cfg
    passed = [o for o in HydraConfig.get().overrides.task if _key(o) not in CHAIN_KEYS]
    store = store or Path(cfg.paths.log_dir) / "stages"
    artifact: Path | None = None
    stages = []
    try:
        for number, stage in enumerate(cfg.stages, start=1):
            overrides = [*passed, *stage.get("overrides", [])]
            if artifact is not None:
                overrides.append(f"++model.architecture={artifact}")
            if cfg.get("inference_timing") and number < len(cfg.stages):
                # AIM Tables 7-8 time the chain's model, its last stage: timing each search too cost minutes
                overrides.append("inference_timing=null")
            stage_cfg = _compose_stage([*overrides, "paths.output_dir=STAGE_FOLDER"])
            kind = stage.get("kind", "train")
            digest = stage_hash(stage_cfg, kind)
            folder = (store / f"{stage.name}-{digest[:12]}").resolve()
            with open_dict(stage_cfg):
                stage_cfg.paths.output_dir = str(folder)
            record_path = folder / "stage.json"
            record = json.loads(record_path.read_text()) if record_path.is_file() else {}
            reused = not cfg.get("fresh", False) and record.get("status") == "completed"
            if reused:
                log.info("stage %s: reusing %s (same config, hash %s)", stage.name, folder, digest[:12])
            else:
                if folder.exists():  # a failed or forced stage starts from an empty folder
                    shutil.rmtree(folder)
                log.info("stage %s (%s): %s", stage.name, kind, folder)
                if kind == "random":
                    folder.mkdir(parents=True)
                    write_json(folder / "metrics.json", draw_random(stage_cfg, folder))
                else:
                    train(stage_cfg)
                record = {"name": stage.name, "kind": kind, "hash": digest, "status": "completed",
                          "overrides": overrides}  # fmt: skip
                write_json(record_path, record)
            metrics = json.loads((folder / "metrics.json").read_text())
            artifact = folder / FILENAME if (folder / FILENAME).is_file() else artifact
            stages.append(_stage_summary(stage.name, kind, folder, reused, digest, metrics))
    finally:
        HydraConfig.instance().cfg = outer
    summary = {"stages": stages, "final_artifact": str(artifact) if artifact else None}
    out = Path(cfg.paths.output_dir)
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_summary_md(stages))
    log.info("summary: %s", out / "summary.md")
    return summary


def _stage_summary(
    name: str, kind: str, folder: Path, reused: bool, digest: str, metrics: dict[str, Any]
) -> dict[str, Any]:
    arch = metrics.get("architecture") or {}
    return {
        "name": name,
        "kind": kind,
        "folder": str(folder),
        "reused": reused,
        "hash": digest,
        "metrics": {k: metrics[k] for k in SUMMARY_KEYS if k in metrics},
        "artifact": arch.get("path"),
        "counts": arch.get("counts"),
    }


def _summary_md(stages: list[dict[str, Any]]) -> str:
    lines = ["# Search stages", "", "| stage | kind | reused | metrics | artifact | decisions | folder |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in stages:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in s["metrics"].items())
        counts = "; ".join(f"{space}: {c}" for space, c in (s["counts"] or {}).items())
        lines.append(
            f"| {s['name']} | {s['kind']} | {'yes' if s['reused'] else 'no'} | {metrics} | {s['artifact'] or ''} "
            f"| {counts} | {s['folder']} |"
        )
    return "\n".join(lines) + "\n"


def run_stage_job(cfg: DictConfig) -> dict[str, Any]:
    """A reproduction job that is a chain of stages (its config has ``stages``, e.g. from ``+search=joint``): the
    stages run, or are reused, in ``<job>/stages/``, and the job folder gets what a training job leaves for
    ``ctrlab.reproduce`` and the report: ``config_resolved.yaml`` (the job's config, compared on a re-run) and
    ``metrics.json``, which is the final stage's plus, from the stage that made the final architecture, its
    ``without_retrain/*`` scores and its counts (``searched_architecture``), the planted-truth ``recovery`` every
    stage scored, and the ``stages`` summary. However it ends, ``metrics.json`` is written (``status: failed``
    and the error)."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    choices = _choices()
    metrics: dict[str, Any] = {
        "model": choices.get("model"),
        "data": choices.get("data"),
        "seed": cfg.get("seed"),
        "paper_row": _paper_row(cfg, choices.get("model")),
        "paper_dataset": cfg.data.get("paper_dataset"),
        "status": "running",
    }
    try:
        summary = run_stages(cfg, store=out / "stages")
        final = json.loads((Path(summary["stages"][-1]["folder"]) / "metrics.json").read_text())
        maker = next(s for s in summary["stages"] if Path(s["folder"]) / FILENAME == Path(summary["final_artifact"]))
        made = json.loads((Path(maker["folder"]) / "metrics.json").read_text())
        # each search stage scores what its artifact holds (AIM: FIS and IFS from the interaction search's α',
        # EDS from the embed search's β); a later stage's score of the same thing replaces an earlier one
        recovered: dict[str, Any] = {}
        for stage in summary["stages"]:
            recovered |= json.loads((Path(stage["folder"]) / "metrics.json").read_text()).get("recovery") or {}
        metrics = {
            **final,
            **{k: v for k, v in made.items() if k.startswith("without_retrain/")},
            "recovery": recovered or None,
            "searched_architecture": made.get("architecture"),
            "stages": summary["stages"],
        }
    except BaseException as err:
        metrics.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        write_json(out / "metrics.json", metrics)
    return metrics
