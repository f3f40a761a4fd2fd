"""Optimizers not in ``torch.optim``: FTRL-Proximal and group-lasso FTRL (DynInt §4.1.4), GRDA (AIM eq. 21)."""

from ctrlab.optim.ftrl import FTRL, GroupLassoFTRL
from ctrlab.optim.grda import GRDA

__all__ = ["FTRL", "GRDA", "GroupLassoFTRL"]
