"""The data path: raw readers and recipes -> validated cache -> whole-batch loaders (docs/architecture.md)."""
