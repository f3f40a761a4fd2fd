"""``RetrainModule``: the re-train stage (OptInter Algorithm 2, eq. 19; docs/architecture.md, "Search contract").

Training is ``CTRModule``'s: train.py builds the model from scratch with ``model.architecture`` (an artifact's
decisions, read and checked by ``ctrlab.lit.module.build_model``, or an option name for every unit), so no
search weight survives. What this module adds is the record of the architecture: the artifact's path and hash
and how many units kept each option, per space, logged at the start and written to ``metrics.json``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from ctrlab.data.schema import FeatureMap
from ctrlab.lit.module import CTRModule
from ctrlab.models.base import CTRModel
from ctrlab.search.artifact import decision_counts, file_sha256, is_artifact_path, read_artifact
from ctrlab.search.space import SearchableModel

log = logging.getLogger("ctrlab.retrain")


class RetrainModule(CTRModule):
    """``CTRModule`` over a model with a fixed architecture; ``architecture`` is the run's
    ``model.architecture`` (``configs/module/retrain.yaml`` interpolates it)."""

    def __init__(
        self,
        model: CTRModel,
        optimizer: DictConfig | dict,
        config: DictConfig | dict | None = None,
        feature_map: FeatureMap | None = None,
        architecture: str | None = None,
    ) -> None:
        super().__init__(model=model, optimizer=optimizer, config=config, feature_map=feature_map)
        if not isinstance(model, SearchableModel):
            raise TypeError(f"module=retrain needs a searchable model; {type(model).__name__} is not one")
        if architecture is None:
            raise ValueError(
                "module=retrain needs config key `model.architecture`: a path to an architecture.json (a search "
                "stage's artifact) or an option name for every unit; it is null, which is a search"
            )
        self.architecture = self._describe(model, architecture)

    @staticmethod
    def _describe(model: SearchableModel, architecture: str) -> dict[str, Any]:
        """Path, hash and per-space option counts of the architecture the model was built with."""
        options = {s.name: list(s.options) for s in model.search_spaces()}
        if is_artifact_path(architecture):
            artifact = read_artifact(architecture)
            return {
                "path": str(architecture),
                "sha256": file_sha256(architecture),
                "kind": artifact.provenance.kind,
                "counts": artifact.counts(),
            }
        decisions = {s.name: [architecture] * len(s.units) for s in model.search_spaces()}
        return {"path": None, "sha256": None, "kind": "option", "counts": decision_counts(decisions, options)}

    def on_fit_start(self) -> None:
        arch = self.architecture
        log.info("re-training architecture %s: %s", arch["path"] or "(an option name)", arch["counts"])

    def stage_metrics(self, trainer: pl.Trainer, datamodule: pl.LightningDataModule, test: bool) -> dict[str, Any]:
        return {"architecture": self.architecture}
