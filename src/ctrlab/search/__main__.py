"""``python -m ctrlab.search [search=joint|bilevel|random] <train overrides>``: the stages of an architecture
search as one command (``ctrlab.search.stages``; config ``configs/search.yaml``)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from ctrlab.console import quiet_third_party
from ctrlab.search.stages import run_stages

log = logging.getLogger("ctrlab.search")


@hydra.main(version_base="1.3", config_path="../../../configs", config_name="search")
def main(cfg: DictConfig) -> None:
    quiet_third_party()
    try:
        run_stages(cfg)
    except Exception as err:
        log.error("%s: %s", type(err).__name__, err, exc_info=err)  # one line; the traceback is in the log file
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
