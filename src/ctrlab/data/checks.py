"""What the dataset sources share about their config: the checks, each error naming the ``data.source.<key>`` at
fault and what it allows (so a typo in a data config fails at start with the fix in the message), and the cache key
of a source's recipe.

A source is a frozen dataclass whose fields are its config keys (``configs/data/<name>.yaml`` names every one):
Hydra instantiates its generated ``__init__``, ``ctrlab.run_config`` checks each key against the field's type
before any work, the source's ``__post_init__`` checks ranges and choices with the functions below, and
``recipe_key`` turns the fields into the cache key, so the recipe is stated once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

ON_BAD_LINE = ("error", "skip")  # data.source.on_bad_line of every reader: stop at a malformed line, or drop it
REPORT_BAD = 5  # how many malformed lines a skip describes (in the log and feature_map.extra)
NOT_IN_KEY = {"cache_key": False}  # field(metadata=NOT_IN_KEY): a key that is not part of the cache key


def check_choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming ``data.source.<key>`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"data.source.{key} = {value!r} is not one of {list(allowed)}")


def check_positive(key: str, value: int | None, nullable: bool = False) -> None:
    """Raise ``ValueError`` naming ``data.source.<key>`` unless ``value`` >= 1 (or null, where allowed)."""
    if value is None and nullable:
        return
    if value is None or value < 1:
        allowed = "null (all rows) or positive" if nullable else "positive"
        raise ValueError(f"data.source.{key} = {value} must be {allowed}")


def check_path(key: str, value: str, how: str) -> None:
    """Raise ``ValueError`` when the raw-data location ``data.source.<key>`` is unset (empty, or Hydra's ``???``
    of an unset environment variable); ``how`` says how to set it."""
    if str(value) in ("", "???"):
        raise ValueError(f"data.source.{key} is not set: {how}")


def recipe_key(source: Any) -> dict[str, Any]:
    """The fields of a source dataclass that its arrays depend on, as plain JSON values: every field but those
    marked ``field(metadata=NOT_IN_KEY)`` (``chunk_rows``, which changes only memory; the raw path, which the
    source's ``cache_key`` replaces by its files' fingerprints). A list or mapping from Hydra (``ListConfig``,
    ``DictConfig``) or a tuple becomes a plain list or dict, so the key does not depend on how the source was
    built."""
    fields = [f for f in dataclasses.fields(source) if f.metadata.get("cache_key", True)]
    return {f.name: _plain(getattr(source, f.name)) for f in fields}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value
