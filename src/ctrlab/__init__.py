"""ctrlab: reproducing DynInt, DPN, OptInter and AIM for click-through-rate prediction."""

__version__ = "0.1.0"
