"""A synthetic behaviour-sequence dataset with a planted target-behaviour interaction (DIN-shaped).

Same fields as ``amazon.py``'s ``din`` recipe — ``user_id, item_id, cat_id`` + ``hist_item_id,
hist_cat_id`` (``sequence``, sharing the item / category vocabularies) — so a sequence model developed
here runs on Amazon unchanged. The generative model:

* ``num_interests`` latent interests with unit centres ``mu_k`` in R^``latent_dim``; category ``c``
  belongs to interest ``c mod num_interests``; each item has one category (every category at least one
  item) and a unit latent vector ``v_i = normalise(mu_k + item_noise * g_i)``, g_i ~ N(0, I / latent_dim).
  Item popularity is Zipf(``zipf_alpha``) over a random order of the items.
* A user has an interest mixture ``theta_u ~ Dirichlet(user_interest_alpha)`` (small alpha: a few
  interests per user). Each row draws a user uniformly, a history length uniformly in
  [``min_hist_len``, ``max_len``], and each behaviour by drawing an interest from ``theta_u`` and an item
  of that interest by popularity. The target item comes from the user's interests with probability
  ``target_from_interest_prob``, else from the overall popularity.
* The click logit is
  ``logit = b + first_order_std * z(w_user + w_item) + interaction_std * z(a(<v_target, v_h>, h in history))``
  with ``w ~ N(0, 1)`` per user / item, ``z`` standardising over the rows, and ``a`` the planted
  target-behaviour interaction: ``max`` (default; DIN's premise that a click is driven by the few most
  relevant past behaviours, which a mean-pooled history only sees diluted) or ``mean``. ``b`` is solved so
  that the mean click rate is ``ctr``; ``y ~ Bernoulli(sigmoid(logit))``.

``feature_map.extra["planted"]`` records the model; ``extra["oracle"]`` holds, per valid and test split, the
AUC and log loss of the true logit (the ceiling, as every stand-in's), and on the test split also its AUC in
KFAtt's New and inFreq groups (``auc_new``, ``auc_infreq``: the rows ``lit/behaviour_groups.py`` puts there, so
the report's oracle row stands beside DPN Table 5's three columns); ``extra["interaction_test_auc"]`` is the
test AUC of the planted interaction alone. Everything is a deterministic function of ``seed``. Split: random
``split`` of the rows. Encoding as the real recipes: a value counted fewer than ``min_count`` times in the train
split (as a target or inside a train history) is OOV.

The config: ``SyntheticSequenceSource`` is a frozen dataclass whose fields are the keys of
``configs/data/synthetic_sequence.yaml`` with their types (checked by ``ctrlab.run_config`` before any work);
``__post_init__`` checks their values; the cache key is every field (``ctrlab.data.checks.recipe_key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import expit

from ctrlab.data.checks import check_choice, recipe_key
from ctrlab.data.schema import SPLITS, FeatureMap
from ctrlab.data.sequences import din_fields, train_vocab, window_coverage, write_bags
from ctrlab.data.synthetic import auc, log_loss, split_indices
from ctrlab.lit.behaviour_groups import behaviour_groups

RECIPE_VERSION = 2  # 2: extra["oracle"] per split and test group (was extra["oracle_test_auc"])
AGGREGATIONS = ("max", "mean")


@dataclass
class Draw:
    """One draw of the generative model (raw ids, before encoding)."""

    user: np.ndarray  # [N] user of each row
    target: np.ndarray  # [N] target item
    hist: np.ndarray  # [T] flat histories, row after row, oldest first
    hist_lo: np.ndarray  # [N] start of each row's history in ``hist``
    hist_len: np.ndarray  # [N]
    item_cat: np.ndarray  # [I] category of each item
    item_latent: np.ndarray  # [I, latent_dim] unit latent vector of each item
    interaction: np.ndarray  # [N] the planted target-behaviour term, before scaling
    logit: np.ndarray  # [N]
    label: np.ndarray  # [N] float32


@dataclass(frozen=True)
class SyntheticSequenceSource:
    """Generates the synthetic behaviour-sequence dataset; see the module docstring. The fields are the keys of
    ``configs/data/synthetic_sequence.yaml``, all in the cache key."""

    name: str
    num_rows: int
    num_users: int
    num_items: int
    num_categories: int
    num_interests: int
    latent_dim: int
    item_noise: float
    zipf_alpha: float
    user_interest_alpha: float
    min_hist_len: int
    max_len: int
    target_from_interest_prob: float
    aggregation: str
    first_order_std: float
    interaction_std: float
    ctr: float
    split: Sequence[float]
    min_count: int
    seed: int

    def __post_init__(self) -> None:
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        if self.num_categories < self.num_interests or self.num_items < self.num_categories:
            raise ValueError(
                f"{self.name}: need num_items ({self.num_items}) >= num_categories ({self.num_categories}) >= "
                f"num_interests ({self.num_interests}), so that every interest has an item"
            )
        if not 1 <= self.min_hist_len <= self.max_len:
            raise ValueError(f"{self.name}: need 1 <= min_hist_len ({self.min_hist_len}) <= max_len ({self.max_len})")
        if not 0.0 < self.ctr < 1.0:
            raise ValueError(f"{self.name}: ctr = {self.ctr} must lie in (0, 1)")

    def cache_key(self) -> dict[str, Any]:
        return {"source": "synthetic_sequence", "recipe_version": RECIPE_VERSION, **recipe_key(self)}

    def planted(self) -> dict[str, Any]:
        return {
            "interaction": f"{self.aggregation} over the history of <v_target, v_behaviour>",
            "aggregation": self.aggregation,
            "interaction_std": self.interaction_std,
            "first_order": "w_user + w_item",
            "first_order_std": self.first_order_std,
            "num_interests": self.num_interests,
            "latent_dim": self.latent_dim,
            "category_interest": "category c belongs to interest c mod num_interests",
        }

    def generate(self) -> Draw:
        """The raw draw (deterministic in ``seed``)."""
        rng = np.random.default_rng([self.seed, 0])
        n, num_items, k, d = self.num_rows, self.num_items, self.num_interests, self.latent_dim

        # items: category (each at least once), interest, latent vector, popularity
        item_cat = np.concatenate(
            [np.arange(self.num_categories), rng.integers(0, self.num_categories, num_items - self.num_categories)]
        )
        item_cat = item_cat[rng.permutation(num_items)]
        item_interest = item_cat % k
        mu = rng.normal(size=(k, d))
        mu /= np.linalg.norm(mu, axis=1, keepdims=True)
        v = mu[item_interest] + self.item_noise * rng.normal(size=(num_items, d)) / np.sqrt(d)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        popularity = np.empty(num_items)
        popularity[rng.permutation(num_items)] = 1.0 / np.arange(1, num_items + 1) ** self.zipf_alpha

        # sampling an item of a given interest by popularity: items ordered by interest, one cumulative sum
        order = np.argsort(item_interest, kind="stable")
        cum = np.cumsum(popularity[order])
        bounds = np.searchsorted(item_interest[order], np.arange(k + 1))  # interest j: order[bounds[j]:bounds[j+1]]
        w_lo = np.where(bounds[:-1] > 0, cum[np.maximum(bounds[:-1] - 1, 0)], 0.0)
        w_hi = cum[bounds[1:] - 1]

        def item_of(interest: np.ndarray) -> np.ndarray:
            x = w_lo[interest] + rng.random(len(interest)) * (w_hi[interest] - w_lo[interest])
            idx = np.clip(np.searchsorted(cum, x, side="right"), bounds[interest], bounds[interest + 1] - 1)
            return order[idx]

        theta = rng.dirichlet(np.full(k, self.user_interest_alpha), size=self.num_users)  # [U, K]
        theta_cum = np.cumsum(theta, axis=1)

        def interest_of(users: np.ndarray) -> np.ndarray:
            u01 = rng.random(len(users))[:, None]
            return np.minimum((u01 > theta_cum[users]).sum(axis=1), k - 1)

        user = rng.integers(0, self.num_users, n)
        hist_len = rng.integers(self.min_hist_len, self.max_len + 1, n)
        hist_lo = np.concatenate([[0], np.cumsum(hist_len)[:-1]])
        row_of = np.repeat(np.arange(n), hist_len)  # [T]
        hist = item_of(interest_of(user[row_of]))
        from_interest = rng.random(n) < self.target_from_interest_prob
        by_popularity = order[np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), num_items - 1)]
        target = np.where(from_interest, item_of(interest_of(user)), by_popularity)

        # the planted interaction and the logit
        sim = (v[target[row_of]] * v[hist]).sum(axis=1)  # [T]
        reduce = np.maximum if self.aggregation == "max" else np.add
        interaction = reduce.reduceat(sim, hist_lo)  # histories are contiguous and never empty
        if self.aggregation == "mean":
            interaction = interaction / hist_len
        w_user, w_item = rng.normal(size=self.num_users), rng.normal(size=num_items)

        def z(x: np.ndarray) -> np.ndarray:
            return (x - x.mean()) / x.std() if x.std() > 0 else np.zeros_like(x)

        logit = self.first_order_std * z(w_user[user] + w_item[target]) + self.interaction_std * z(interaction)
        bias = brentq(lambda b: expit(logit + b).mean() - self.ctr, -30.0, 30.0)
        logit = logit + bias
        label = (rng.random(n) < expit(logit)).astype(np.float32)
        return Draw(user, target, hist, hist_lo, hist_len, item_cat, v, interaction, logit, label)

    def build(self, out_dir: Path) -> FeatureMap:
        draw = self.generate()
        n = len(draw.label)
        splits = split_indices(n, self.split, np.random.default_rng([self.seed, 1]))
        train = splits["train"]
        cover = window_coverage(len(draw.hist), draw.hist_lo[train], draw.hist_len[train])
        num_items, num_cats = self.num_items, self.num_categories
        user_lut, user_vocab = train_vocab(np.bincount(draw.user[train], minlength=self.num_users), self.min_count)
        item_counts = np.bincount(draw.target[train], minlength=num_items) + np.bincount(
            draw.hist, weights=cover, minlength=num_items
        )
        cat_counts = np.bincount(draw.item_cat[draw.target[train]], minlength=num_cats) + np.bincount(
            draw.item_cat[draw.hist], weights=cover, minlength=num_cats
        )
        item_lut, item_vocab = train_vocab(item_counts, self.min_count)
        cat_lut, cat_vocab = train_vocab(cat_counts, self.min_count)
        flat_item, flat_cat = item_lut[draw.hist], cat_lut[draw.item_cat[draw.hist]]
        for split in SPLITS:
            rows = splits[split]  # a random permutation's slice: train rows come shuffled
            t = draw.target[rows]
            ids = np.stack([user_lut[draw.user[rows]], item_lut[t], cat_lut[draw.item_cat[t]]], axis=1)
            np.save(out_dir / f"{split}_ids.npy", ids.astype(np.int32))
            np.save(out_dir / f"{split}_labels.npy", draw.label[rows])
            write_bags(
                out_dir / f"{split}_bags.npy",
                [flat_item, flat_cat],
                draw.hist_lo[rows],
                draw.hist_len[rows],
                self.max_len,
            )
        test = splits["test"]
        logit, label = draw.logit, draw.label
        oracle = {
            s: {"auc": auc(logit[splits[s]], label[splits[s]]), "logloss": log_loss(logit[splits[s]], label[splits[s]])}
            for s in ("valid", "test")
        }
        target_cat = torch.from_numpy(cat_lut[draw.item_cat[draw.target[test]]])  # [n]
        cat_history = torch.from_numpy(np.load(out_dir / "test_bags.npy")[:, 1])  # [n, max_len], as models see it
        for name, rows in behaviour_groups(target_cat, cat_history).items():
            rows = rows.numpy()
            oracle["test"][f"auc_{name}"] = auc(logit[test][rows], label[test][rows])
        return FeatureMap(
            dataset=self.name,
            fields=din_fields(user_vocab, item_vocab, cat_vocab, self.max_len),
            split_sizes={s: len(r) for s, r in splits.items()},
            description=f"synthetic behaviour sequences, {n:,} rows, {self.num_users:,} users, {num_items:,} items "
            f"(planted {self.aggregation} target-behaviour similarity) — not the paper's data",
            extra={
                "planted": self.planted(),
                "ctr": float(draw.label.mean()),
                "oracle": oracle,
                "interaction_test_auc": auc(draw.interaction[test], draw.label[test]),
            },
        )
