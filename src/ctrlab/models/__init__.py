"""Models: each composes blocks from ``ctrlab.nn`` and returns logits [B]."""
