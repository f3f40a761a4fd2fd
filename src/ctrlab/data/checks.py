"""Config checks shared by the dataset sources: each error names the ``data.source.<key>`` at fault and
what it allows, so a typo in a data config fails at start with the fix in the message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ON_BAD_LINE = ("error", "skip")  # data.source.on_bad_line of every reader: stop at a malformed line, or drop it
REPORT_BAD = 5  # how many malformed lines a skip describes (in the log and feature_map.extra)


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
