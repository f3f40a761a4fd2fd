"""Optimizers not in ``torch.optim``: FTRL-Proximal and group-lasso FTRL (DynInt §4.1.4), GRDA (AIM eq. 21), and
the sparse-gradient embedding optimizers LazyAdam and RowWiseAdagrad."""

from ctrlab.optim.ftrl import FTRL, GroupLassoFTRL
from ctrlab.optim.grda import GRDA
from ctrlab.optim.sparse import LazyAdam, RowWiseAdagrad

__all__ = ["FTRL", "GRDA", "GroupLassoFTRL", "LazyAdam", "RowWiseAdagrad"]
