"""ctrlab: reproducing DynInt, DPN, OptInter and AIM for click-through-rate prediction."""

from omegaconf import OmegaConf

__version__ = "0.1.0"

# ${repeat:400,3} -> [400, 400, 400]: hyper-parameter grids (configs/grid/) give a depth and a width, models take lists
OmegaConf.register_new_resolver("repeat", lambda value, times: [value] * int(times), replace=True)
