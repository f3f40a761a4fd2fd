"""The task of a reproduction's multirun (``ctrlab.reproduce``): one training job, done as ``plan.json`` says.

``ctrlab.reproduce`` compares each job's folder with the job's config before launching and writes, per job
number, ``skip`` (completed with the same config: the saved metrics stand), ``resume`` (cut: continue from
``checkpoints/last.ckpt``) or ``run``. Everything else is ``ctrlab.train``'s task, unchanged; a job whose config
has ``stages`` (an experiment's ``stage_rows``: ``+search=<chain>``) runs that chain in its folder instead
(``ctrlab.search.stages.run_stage_job``), where a resumed job reuses the stages it finished.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ctrlab.console import quiet_third_party
from ctrlab.reproduce import PLAN_FILE
from ctrlab.search.stages import run_stage_job
from ctrlab.train import main as train_main

log = logging.getLogger("ctrlab.reproduce_job")


@hydra.main(version_base="1.3", config_path="../../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    plan = json.loads((Path(hc.sweep.dir) / PLAN_FILE).read_text())
    entry = plan.get(str(hc.job.num))
    if entry is None or entry["overrides"] != list(hc.overrides.task):
        # the plan numbers jobs as Hydra's basic sweeper does; a mismatch would skip or resume the wrong job
        raise RuntimeError(
            f"job {hc.job.num} ({' '.join(hc.overrides.task)}) is not job {hc.job.num} of "
            f"{Path(hc.sweep.dir) / PLAN_FILE}; run ctrlab.reproduce again"
        )
    output_dir = Path(cfg.paths.output_dir)
    if entry["action"] == "skip":
        log.info("job %s completed before with the same config; skipped", hc.job.num)
        metrics = json.loads((output_dir / "metrics.json").read_text())
        return metrics.get(cfg.get("optimized_metric") or "val/auc")
    if cfg.get("stages"):
        quiet_third_party()
        if entry["action"] == "resume":
            log.info("job %s was cut; its finished stages are reused", hc.job.num)
        try:
            return run_stage_job(cfg).get(cfg.get("optimized_metric") or "val/auc")
        except Exception as err:  # as ctrlab.train's task in a multirun: recorded, and the sweep goes on
            log.error("%s: %s", type(err).__name__, err, exc_info=err)
            return None
    if entry["action"] == "resume":
        cfg.ckpt_path = str(output_dir / "checkpoints" / "last.ckpt")
        log.info("job %s was cut; resuming from %s", hc.job.num, cfg.ckpt_path)
    return train_main.__wrapped__(cfg)  # ctrlab.train's task without its own @hydra.main


if __name__ == "__main__":
    main()
