"""KFAtt's test groups of behaviour data (Liu et al. 2020; DPN Table 5's "New" and "inFreq" columns), as a mask
per evaluation row, so that one run reports the AUC of the whole split and of each group (``CTRModule``).

KFAtt's two failure modes of attention name the groups; a group is a property of the row itself (its target and its
history), so it needs no train statistics and works on any data with DIN's layout (``data/sequences.py``):

- ``new``: the target's category never occurs in the history (empty histories included): a *new demand* that
  no past behaviour is relevant to, where KFAtt's prior takes over.
- ``infreq``: the target's category occurs in the history, but less often than the history's most frequent
  category: the relevant behaviours are outnumbered by more frequent irrelevant ones (KFAtt's frequency bias).

Categories are compared by id, so an OOV category (seen fewer than ``min_count`` times in train) matches every
other OOV one. docs/decisions.md, "DPN Tables 4-5", says why these definitions.
"""

from __future__ import annotations

import torch

from ctrlab.data.schema import FeatureMap

CATEGORY_FIELD = "cat_id"  # DIN's layout: the target's category; its history is the sequence field sharing it
GROUPS = ("new", "infreq")


def group_columns(feature_map: FeatureMap) -> tuple[int, int] | None:
    """(the category's column in ``ids``, its history's index in ``bag_ids``) in behaviour data; None elsewhere."""
    names = [f.name for f in feature_map.scalar_fields]
    histories = [i for i, f in enumerate(feature_map.bag_fields) if f.kind == "sequence" and f.shares == CATEGORY_FIELD]
    return (names.index(CATEGORY_FIELD), histories[0]) if histories and CATEGORY_FIELD in names else None


def behaviour_groups(target: torch.Tensor, history: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each group's row mask [B] from the target category [B] and the category history [B, L] (0 = padding)."""
    real = history > 0  # [B, L]
    relevant = ((history == target.unsqueeze(1)) & real).sum(dim=1)  # [B]: occurrences of the target's category
    same = (history.unsqueeze(2) == history.unsqueeze(1)) & real.unsqueeze(1)  # [B, L, L]
    most = (same.sum(dim=2) * real).amax(dim=1)  # [B]: occurrences of the history's most frequent category
    return {"new": relevant == 0, "infreq": (relevant > 0) & (relevant < most)}
