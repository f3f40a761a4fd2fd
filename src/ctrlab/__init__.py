"""ctrlab: reproducing DynInt, DPN, OptInter and AIM for click-through-rate prediction."""

from omegaconf import OmegaConf

__version__ = "0.1.0"

# ${repeat:400,3} -> [400, 400, 400]: hyper-parameter grids (configs/grid/) give a depth and a width, models take lists
OmegaConf.register_new_resolver("repeat", lambda value, times: [value] * int(times), replace=True)

# what early stopping and the best checkpoint watch (`monitor` in configs/train.yaml) and which way is better
MONITOR_MODES = {"auc": "max", "logloss": "min", "auc_minus_logloss": "max"}
OmegaConf.register_new_resolver("monitor_mode", lambda monitor: MONITOR_MODES.get(monitor, "max"), replace=True)
