"""How much of a stand-in's planted truth a searched architecture recovered (OptInter on ``standin=memorize``).

The ``memorize`` stand-in (``ctrlab.data.synthetic``) plants, per field pair, one of three kinds of interaction
and stores them in ``feature_map.extra["planted"]`` (``pairs`` as field indices, ``kinds``): ``memorized``
(an independent weight per value pair), ``factorized`` (<u_a, u_c>) or none. A search space whose units are field
pairs (``"<field a>×<field b>"``) and whose options include ``memorize``, ``factorize`` and ``naive`` recovered
that truth when it memorizes the memorized pairs, factorizes the factorized ones and leaves the rest naive.
The score per kind is the share of that kind's pairs given the matching option; a kind with no pair has none.
"""

from __future__ import annotations

from typing import Any

from ctrlab.data.schema import FeatureMap
from ctrlab.search.artifact import Artifact

# planted kind -> the option that recovers it
MATCH = {"memorized": "memorize", "factorized": "factorize", "none": "naive"}
PAIR = "×"  # joins the two field names of a pair unit (models/optinter.py)


def planted_kinds(feature_map: FeatureMap) -> dict[str, str] | None:
    """Pair unit name -> planted kind (``memorized`` | ``factorized`` | ``none``) of every field pair, or None when
    the data plants no kinds (real data, or another mechanism)."""
    planted = feature_map.extra.get("planted") or {}
    if "kinds" not in planted:
        return None
    names = [f.name for f in feature_map.fields]
    kinds = {tuple(sorted(p)): k for p, k in zip(planted["pairs"], planted["kinds"], strict=True)}
    return {f"{names[a]}{PAIR}{names[b]}": kinds.get((a, b), "none")
            for a in range(len(names)) for b in range(a + 1, len(names))}  # fmt: skip


def recovery(artifact: Artifact, feature_map: FeatureMap) -> dict[str, Any] | None:
    """Per planted kind, the share of its searched pairs that took the matching option, and how many pairs that
    is: ``{"memorized": {"share": 1.0, "pairs": 3}, ...}``; None when the data plants no kinds or the artifact has
    no space of field pairs with the three options. Pairs the search did not cover (no cross) are left out."""
    truth = planted_kinds(feature_map)
    space = next((s for s in artifact.spaces if set(MATCH.values()) <= set(s.options)), None)
    if truth is None or space is None:
        return None
    out: dict[str, Any] = {}
    for kind, option in MATCH.items():
        chosen = [d for u, d in zip(space.units, space.decisions, strict=True) if truth.get(u) == kind]
        if chosen:
            out[kind] = {"share": chosen.count(option) / len(chosen), "pairs": len(chosen)}
    return out
