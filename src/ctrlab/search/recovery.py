"""How much of a stand-in's planted truth a searched architecture recovered (OptInter on ``standin=memorize``).

The ``memorize`` stand-in (``ctrlab.data.synthetic``) plants, per field pair, one of three kinds of interaction
and stores them in ``feature_map.extra["planted"]`` (``pairs`` as field indices, ``kinds``): ``memorized``
(an independent weight per value pair), ``factorized`` (<u_a, u_c>) or none. A search space whose units are field
pairs (``"<field a>×<field b>"``) and whose options include ``memorize``, ``factorize`` and ``naive`` recovered
that truth when it memorizes the memorized pairs, factorizes the factorized ones and leaves the rest naive.
The score per kind is the share of that kind's pairs given the matching option; a kind with no pair has none.

The ``functions`` stand-in (AIM) plants sparse pairs, each with an interaction function, and a useful embedding
size d_f per field; ``function_recovery`` scores FIS, IFS and EDS against it (AIM's three searches).
"""

from __future__ import annotations

import math
from typing import Any

from scipy.stats import spearmanr

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
    """The planted truth a searched architecture recovered: ``function_recovery`` on AIM's ``functions``
    stand-in, ``kind_recovery`` on OptInter's ``memorize`` stand-in; None on other data."""
    return function_recovery(artifact, feature_map) or kind_recovery(artifact, feature_map)


def kind_recovery(artifact: Artifact, feature_map: FeatureMap) -> dict[str, Any] | None:
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


# AIM's `functions` stand-in: the planted function -> the AIM function that computes the same form (weighted,
# sum_k h_k u_a,k u_c,k, is the vector kernel product); the stand-in's `kernel` (u_a^T K u_c with a full random K)
# has no exact AIM counterpart, so its pairs are not scored for IFS (docs/decisions.md, "AIM model and stages").
# `planted_functions: aim` plants AIM's own forms under AIM's names.
AIM_FUNCTION = {"inner": "inner", "weighted": "vector_kernel", "outer": "outer", "vector_kernel": "vector_kernel",
                "scalar_kernel": "scalar_kernel"}  # fmt: skip
INTERACTION_SPACES = {"interaction_function": None, "interaction": "keep"}  # AIM (subset), AutoFIS (keep / drop)
DIM_SPACE = "embedding_dim"


def function_recovery(artifact: Artifact, feature_map: FeatureMap) -> dict[str, Any] | None:
    """On the ``functions`` stand-in (AIM), what a searched AIM / AutoFIS architecture recovered, each score only
    where the artifact has what it needs:

    - ``fis_kept`` / ``fis_dropped``: the share of the planted pairs kept (any function, or ``keep``) and of the
      other pairs dropped, over the 2nd-order units of the interaction space;
    - ``ifs``: over the kept planted pairs whose planted function has an AIM counterpart (``AIM_FUNCTION``), the
      share whose largest |α'| among the kept functions is that counterpart (needs the search's weights);
    - ``eds``: Spearman's rank correlation of the kept embedding size per field with its planted useful size
      (d_f for a field in a planted pair, else 0: a field in no pair has no useful dimension).

    None when the data is not the ``functions`` stand-in or the artifact has none of these spaces."""
    planted = feature_map.extra.get("planted") or {}
    if planted.get("mechanism") != "functions":
        return None
    names = [f.name for f in feature_map.fields]
    truth = {f"{names[a]}{PAIR}{names[b]}": fn for (a, b), fn in zip(planted["pairs"], planted["functions"],
                                                                      strict=True)}  # fmt: skip
    spaces = {s.name: s for s in artifact.spaces}
    out: dict[str, Any] = {}
    space = next((spaces[n] for n in INTERACTION_SPACES if n in spaces), None)
    if space is not None:
        keep = INTERACTION_SPACES[space.name]
        pairs = [(u, d, i) for i, (u, d) in enumerate(zip(space.units, space.decisions, strict=True))
                 if u.count(PAIR) == 1]  # fmt: skip
        kept = {u for u, d, _ in pairs if (d == keep if keep else bool(d))}
        planted_units = [u for u, _, _ in pairs if u in truth]
        others = [u for u, _, _ in pairs if u not in truth]
        if planted_units:
            share = sum(u in kept for u in planted_units) / len(planted_units)
            out["fis_kept"] = {"share": share, "pairs": len(planted_units)}
        if others:
            out["fis_dropped"] = {"share": sum(u not in kept for u in others) / len(others), "pairs": len(others)}
        if keep is None and space.weights is not None and len(space.options) > 1:
            scored = [(d, space.weights[i], AIM_FUNCTION[truth[u]]) for u, d, i in pairs
                      if u in kept and truth.get(u) in AIM_FUNCTION]  # fmt: skip
            hits = [max(d, key=lambda o: abs(w[space.options.index(o)])) == want for d, w, want in scored]
            if hits:
                out["ifs"] = {"share": sum(hits) / len(hits), "pairs": len(hits)}
    if DIM_SPACE in spaces:
        in_pairs = {f for pair in planted["pairs"] for f in pair}
        useful = [d if f in in_pairs else 0 for f, d in enumerate(planted["field_dims"])]
        sizes = [len(d) for d in spaces[DIM_SPACE].decisions]
        rho = spearmanr(sizes, useful).statistic if len(set(sizes)) > 1 and len(set(useful)) > 1 else math.nan
        out["eds"] = {"spearman": None if math.isnan(rho) else float(rho), "fields": len(sizes)}
    return out or None
