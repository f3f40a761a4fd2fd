"""What a searchable model exposes to the search platform (docs/architecture.md, "Search contract").

A model that searches part of its architecture (OptInter's method per field pair, AIM's interactions, functions
and embedding dimensions, AutoFIS's interactions) is an ordinary ``CTRModel`` that also keeps
``SearchableModel``. Its architecture is a set of named ``SearchSpace``s; a search ends in ``Decisions``, one
per unit of each space, which the platform writes into the architecture artifact and which a model built from
that artifact (re-train) receives through its ``architecture`` constructor keyword:

- ``architecture=None``: search mode (architecture weights are parameters of the ``arch`` family);
- ``architecture=<option name>``: every unit of the model's (single-option) space takes that option, a config
  shorthand for fixed architectures such as OptInter-M (``memorize``) or OptInter-F (``factorize``);
- ``architecture=<Decisions>``: the decisions of an artifact, read and checked against the data by the platform
  (``model.architecture=<path to architecture.json>`` in a config).

A model validates the decisions it receives against its own spaces (unit count, option names) and fails with a
message naming the space, the unit and the allowed options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

# space name -> one decision per unit, in the order of ``SearchSpace.units``. A decision is an option name for
# one-of-K spaces (OptInter: "memorize"), or a JSON list for subset spaces (AIM: kept functions of an
# interaction, kept dimension indices of a field).
Decisions = dict[str, list[Any]]


@dataclass(frozen=True)
class SearchSpace:
    """One searchable part of a model: ``units`` (e.g. field pairs ``"f3×f7"``), each choosing among ``options``
    (one of them, or a subset when ``subset`` is true)."""

    name: str  # e.g. "pair_method", "interaction", "function", "embedding_dim"
    units: tuple[str, ...]
    options: tuple[str, ...]
    subset: bool = False


@runtime_checkable
class SearchableModel(Protocol):
    """The hooks ``lit/search.py`` calls, besides the ``CTRModel`` contract (whose ``parameter_groups()`` puts the
    architecture weights in the ``arch`` family)."""

    def search_spaces(self) -> list[SearchSpace]:
        """The model's searchable spaces, in a fixed order."""
        ...

    def architecture_weights(self) -> dict[str, torch.Tensor]:
        """Raw architecture weights per space name, ``[U, K]`` (units x options) or ``[U]`` for a gate per unit
        (AutoFIS); written into the artifact beside the decisions."""
        ...

    def derive(self) -> Decisions:
        """The decisions the current architecture weights give (OptInter: argmax per pair; AIM: the non-zero
        weights after GRDA)."""
        ...

    def fix(self, decisions: Decisions) -> None:
        """From now on compute with these hard decisions and the current weights (OptInter Table IX, "without
        re-train"); the architecture weights stop mattering."""
        ...

    def set_temperature(self, tau: float) -> None:
        """The Gumbel-softmax temperature for the next steps (a no-op for models without sampling)."""
        ...
