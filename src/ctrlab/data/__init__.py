"""The data path: raw readers and recipes -> validated cache -> whole-batch loaders (DESIGN §3)."""
