"""Optimizers not in ``torch.optim``: FTRL-Proximal and group-lasso FTRL (DynInt §4.1.4)."""

from ctrlab.optim.ftrl import FTRL, GroupLassoFTRL

__all__ = ["FTRL", "GroupLassoFTRL"]
