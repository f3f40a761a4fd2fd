"""AutoGroup (Liu et al., SIGIR 2020; a baseline of AIM's Table 2): per interaction order p = 1..P, S_p feature
groups whose members are searched; each group's p-th order interaction (``nn.feature_group``) feeds an MLP.

- Search (``architecture=None``): each (order, field, group) has two architecture logits (member / not), the
  ``arch`` parameter family; a training forward samples a hard membership by straight-through Gumbel-softmax at
  temperature τ, an eval forward takes the argmax. ``derive()`` gives each group's member fields.
- Re-train (``architecture=<Decisions>``): the groups have exactly the given members; no architecture logits.

The logit is ``LR(x) + MLP([I_1(s) for s] ++ [I_2(s) for s] ++ ... ++ [I_P(s) for s])``, each order with its own
embedding table of its own size D_p (the released code's ``embedding_<p>``).
"""

from __future__ import annotations

import torch
from torch import nn

from ctrlab.data.schema import FeatureMap
from ctrlab.models.base import CTRModel
from ctrlab.nn.embedding import FeatureEmbedding, LinearTerm
from ctrlab.nn.feature_group import FeatureGroupInteraction, sample_membership
from ctrlab.nn.mlp import MLP, Norm
from ctrlab.search.space import Decisions, SearchSpace

SPACE = "feature_group"
LOGIT_INIT = 1e-3  # structure logits start uniform in ± this (the released code): membership is a coin flip


class AutoGroup(CTRModel):
    """A ``SearchableModel`` with one subset space, ``feature_group``: units ``"order<p>/group<s>"`` (every
    group of every order, by order then group), options the field names; a decision is the list of a group's
    member fields. Architecture weights: the membership log-odds (member minus not-member logit), [U, F]."""

    def __init__(
        self,
        feature_map: FeatureMap,
        embedding_dims: list[int],
        num_groups: list[int],
        embedding_init_std: float,
        temperature: float,
        self_interaction_weight: float,
        mlp_hidden: list[int] | None,
        mlp_dropout: float,
        mlp_norm: Norm,
        architecture: str | Decisions | None = None,
    ) -> None:
        super().__init__()
        _check_settings(embedding_dims, num_groups, temperature, self_interaction_weight)
        names = tuple(f.name for f in feature_map.fields)
        self.num_groups = list(num_groups)
        units = tuple(f"order{p}/group{s}" for p, n in enumerate(num_groups, start=1) for s in range(n))
        self.space = SearchSpace(SPACE, units, names, subset=True)
        self.searching = architecture is None
        self.temperature = temperature
        num_fields = feature_map.num_fields
        self.linear = LinearTerm(feature_map)
        self.embeddings = nn.ModuleList(FeatureEmbedding(feature_map, d, embedding_init_std) for d in embedding_dims)
        self.interactions = nn.ModuleList(
            FeatureGroupInteraction(num_fields, d, n, p, self_interaction_weight)
            for p, (d, n) in enumerate(zip(embedding_dims, num_groups, strict=True), start=1)
        )
        if self.searching:
            self.structure_logits = nn.ParameterList(
                nn.Parameter(torch.empty(num_fields, n, 2).uniform_(-LOGIT_INIT, LOGIT_INIT)) for n in num_groups
            )  # per order [F, S_p, 2]
            membership = torch.zeros(num_fields, sum(num_groups))  # set by fix(); unused until then
        else:
            membership = self._membership(architecture)
        # [F, sum_p S_p]: the hard grouping of a re-train or of fix(), orders side by side
        self.register_buffer("fixed_membership", membership, persistent=False)
        self.fixed = not self.searching
        in_dim = sum(i.out_dim for i in self.interactions)
        self.mlp = MLP(in_dim, mlp_hidden or [], 1, mlp_dropout, mlp_norm)

    def _membership(self, decisions: Decisions) -> torch.Tensor:
        """[F, U] 0/1 from decisions (one list of member field names per group), checked against the space."""
        units, names = self.space.units, self.space.options
        if not isinstance(decisions, dict):
            raise ValueError(
                f"model.architecture = {decisions!r}: AutoGroup takes null (search) or the decisions of a search "
                f"(space {SPACE!r}: a list of member fields per group)"
            )
        if set(decisions) != {SPACE} or len(decisions[SPACE]) != len(units):
            raise ValueError(
                f"model.architecture: AutoGroup expects decisions for the space {SPACE!r} with {len(units)} units "
                f"(groups per order {self.num_groups}); got spaces {sorted(decisions)} with "
                f"{[len(v) for v in decisions.values()]} decisions"
            )
        membership = torch.zeros(len(names), len(units))
        for u, (unit, members) in enumerate(zip(units, decisions[SPACE], strict=True)):
            if not isinstance(members, list) or any(m not in names for m in members):
                raise ValueError(
                    f"model.architecture: space {SPACE!r}, unit {unit!r}: {members!r} is not a list of field "
                    f"names; allowed fields: {', '.join(names)}"
                )
            membership[[names.index(m) for m in members], u] = 1.0
        return membership

    def memberships(self) -> list[torch.Tensor]:
        """Per order, the membership used by the next forward, [F, S_p]: the fixed grouping, or in a search a
        Gumbel-softmax sample (training) or the argmax of the logits (eval)."""
        if self.fixed:
            return list(self.fixed_membership.split(self.num_groups, dim=1))
        return [sample_membership(logits, self.temperature, noise=self.training) for logits in self.structure_logits]

    # --- CTRModel ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = [
            interaction(embedding(batch), membership)  # [B, S_1 * D_1] for p = 1, else [B, S_p]
            for embedding, interaction, membership in zip(
                self.embeddings, self.interactions, self.memberships(), strict=True
            )
        ]
        return self.linear(batch) + self.mlp(torch.cat(terms, dim=1)).squeeze(-1)  # [B]

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        groups = super().parameter_groups()
        if self.searching:
            arch = list(self.structure_logits)
            groups["dense"] = [p for p in groups["dense"] if all(p is not a for a in arch)]
            groups["arch"] = arch
        return {k: v for k, v in groups.items() if v}

    # --- SearchableModel ---------------------------------------------------------------------------------------
    def search_spaces(self) -> list[SearchSpace]:
        return [self.space]

    def architecture_weights(self) -> dict[str, torch.Tensor]:
        self._require_search("architecture_weights")
        logits = torch.cat(list(self.structure_logits), dim=1).detach()  # [F, U, 2]
        return {SPACE: (logits[..., 0] - logits[..., 1]).T.clone()}  # membership log-odds [U, F]

    def derive(self) -> Decisions:
        """Each group's members: the fields whose member logit is not below their not-member logit (the eval
        forward's argmax)."""
        member = self.architecture_weights()[SPACE] >= 0  # [U, F]
        names = self.space.options
        return {SPACE: [[names[f] for f in row.nonzero().flatten().tolist()] for row in member]}

    def fix(self, decisions: Decisions) -> None:
        self._require_search("fix")
        self.fixed_membership.copy_(self._membership(decisions))
        self.fixed = True

    def set_temperature(self, tau: float) -> None:
        if tau <= 0:
            raise ValueError(f"AutoGroup temperature must be > 0, got {tau}")
        self.temperature = tau

    def _require_search(self, hook: str) -> None:
        if not self.searching:
            raise RuntimeError(f"AutoGroup.{hook}: this model was built from an architecture, not for a search")


def _check_settings(
    embedding_dims: list[int], num_groups: list[int], temperature: float, self_interaction_weight: float
) -> None:
    """Fail before any work on a setting the model cannot run with, naming the config key."""
    if not embedding_dims or len(embedding_dims) != len(num_groups):
        raise ValueError(
            f"config keys `model.embedding_dims` = {list(embedding_dims)} and `model.num_groups` = "
            f"{list(num_groups)}: one entry per interaction order 1..P each, the same number (P >= 1)"
        )
    for key, values in (("embedding_dims", embedding_dims), ("num_groups", num_groups)):
        if any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"config key `model.{key}` = {list(values)}: every entry must be an integer >= 1")
    if not temperature > 0:
        raise ValueError(f"config key `model.temperature` = {temperature}: must be > 0")
    if not 0 <= self_interaction_weight <= 1:
        raise ValueError(f"config key `model.self_interaction_weight` = {self_interaction_weight}: must be in [0, 1]")
