"""The embedded default dataset: long-tailed categorical fields, labels from a known logistic model.

    logit(x) = b + sum_f w_f[x_f]                                      (first order)
                 + sum_{(a,c) in P}   <u_a[x_a], u_c[x_c]>                (planted 2nd-order pairs)
                 + sum_{(a,c,e) in T} sum_k u_a[x_a,k] u_c[x_c,k] u_e[x_e,k]  (planted 3rd-order triples)
    y ~ Bernoulli(sigmoid(logit))

Each of the three parts is rescaled to the standard deviation asked for (``first_order_std``, ``pair_std``,
``triple_std``) and b is solved so that the mean click rate is ``ctr``. The planted pairs and triples are
stored in ``feature_map.extra["planted"]`` so a test can check that a search recovers them, and models of
higher order have something FM cannot fit. Shapes mimic Criteo (39 fields), Avazu (24) and iPinYou (16) by
config. Everything is a deterministic function of ``seed``; encoding follows the real recipes: values seen
fewer than ``min_count`` times in the train split become the field's OOV id.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from ctrlab.data.cache import SplitArrays, save_split
from ctrlab.data.schema import FeatureMap, Field

RECIPE_VERSION = 1


def split_indices(n: int, ratios: list[float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random split of ``range(n)`` into train/valid/test by ``ratios`` (which sum to 1)."""
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    perm = rng.permutation(n)
    n_train, n_valid = int(round(ratios[0] * n)), int(round(ratios[1] * n))
    return {
        "train": perm[:n_train],
        "valid": perm[n_train : n_train + n_valid],
        "test": perm[n_train + n_valid :],
    }


def threshold_encode(raw: np.ndarray, train_rows: np.ndarray, min_count: int) -> tuple[np.ndarray, list[int]]:
    """Map raw non-negative int ids [N, F] to local ids: kept values (>= min_count in train) -> 1..V,
    everything else -> OOV = V + 1. Returns the encoded ids and each field's vocab size (V + 2)."""
    encoded = np.empty(raw.shape, dtype=np.int32)
    vocab_sizes = []
    for f in range(raw.shape[1]):  # once per field at build time, not in a training loop
        counts = np.bincount(raw[train_rows, f], minlength=int(raw[:, f].max()) + 1)
        kept = counts >= min_count
        new_id = np.cumsum(kept).astype(np.int32)  # 1..V for kept values
        oov = int(kept.sum()) + 1
        encoded[:, f] = np.where(kept[raw[:, f]], new_id[raw[:, f]], oov)
        vocab_sizes.append(oov + 1)
    return encoded, vocab_sizes


class SyntheticSource:
    """Generates the synthetic dataset; see the module docstring for the model."""

    def __init__(
        self,
        name: str,
        num_rows: int,
        num_fields: int,
        min_vocab: int,
        max_vocab: int,
        zipf_alpha: float,
        num_pairs: int,
        num_triples: int,
        latent_dim: int,
        first_order_std: float,
        pair_std: float,
        triple_std: float,
        ctr: float,
        split: list[float],
        min_count: int,
        seed: int,
    ) -> None:
        if num_pairs > num_fields * (num_fields - 1) // 2 or num_triples > len(
            list(combinations(range(num_fields), 3))
        ):
            raise ValueError(f"{name}: more planted pairs/triples than {num_fields} fields allow")
        self.name = name
        self.cfg = dict(locals())
        del self.cfg["self"]

    def cache_key(self) -> dict[str, Any]:
        return {"source": "synthetic", "recipe_version": RECIPE_VERSION, **self.cfg}

    def planted(self) -> dict[str, list[list[int]]]:
        """The planted pairs and triples of field indices (same draw as build())."""
        rng = np.random.default_rng([self.cfg["seed"], 1])
        f = self.cfg["num_fields"]
        pairs = list(combinations(range(f), 2))
        triples = list(combinations(range(f), 3))
        pi = rng.choice(len(pairs), self.cfg["num_pairs"], replace=False)
        ti = rng.choice(len(triples), self.cfg["num_triples"], replace=False)
        return {
            "pairs": sorted([list(pairs[i]) for i in pi]),
            "triples": sorted([list(triples[i]) for i in ti]),
        }

    def _draw_ids(self, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        vocabs = np.exp(rng.uniform(np.log(c["min_vocab"]), np.log(c["max_vocab"]), c["num_fields"]))
        raw = np.empty((c["num_rows"], c["num_fields"]), dtype=np.int64)
        for f, v in enumerate(vocabs.astype(int)):  # build time only
            p = 1.0 / np.arange(1, v + 1) ** c["zipf_alpha"]
            raw[:, f] = rng.choice(v, size=c["num_rows"], p=p / p.sum())
        return raw

    def _logits(self, raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        n, num_f = raw.shape
        vmax = int(raw.max()) + 1
        w = rng.normal(size=(num_f, vmax))  # first-order weights
        u = rng.normal(size=(num_f, vmax, c["latent_dim"]))  # latent vectors of the planted terms
        fields = np.arange(num_f)
        first = w[fields, raw].sum(axis=1)  # [N]
        planted = self.planted()
        pair = np.zeros(n)
        for a, b in planted["pairs"]:
            pair += (u[a, raw[:, a]] * u[b, raw[:, b]]).sum(axis=1)
        triple = np.zeros(n)
        for a, b, e in planted["triples"]:
            triple += (u[a, raw[:, a]] * u[b, raw[:, b]] * u[e, raw[:, e]]).sum(axis=1)

        def scaled(x: np.ndarray, std: float) -> np.ndarray:
            return np.zeros_like(x) if std == 0 or x.std() == 0 else (x - x.mean()) * (std / x.std())

        z = scaled(first, c["first_order_std"]) + scaled(pair, c["pair_std"]) + scaled(triple, c["triple_std"])
        bias = brentq(lambda b: expit(z + b).mean() - c["ctr"], -30.0, 30.0)
        return z + bias

    def build(self, out_dir: Path) -> FeatureMap:
        c = self.cfg
        rng = np.random.default_rng([c["seed"], 0])
        raw = self._draw_ids(rng)
        labels = (rng.random(c["num_rows"]) < expit(self._logits(raw, rng))).astype(np.float32)
        splits = split_indices(c["num_rows"], list(c["split"]), rng)
        ids, vocab_sizes = threshold_encode(raw, splits["train"], c["min_count"])
        for split, rows in splits.items():
            save_split(out_dir, split, SplitArrays(ids=ids[rows], labels=labels[rows]))
        return FeatureMap(
            dataset=self.name,
            fields=[Field(f"f{i}", v) for i, v in enumerate(vocab_sizes)],
            split_sizes={s: len(r) for s, r in splits.items()},
            description=f"synthetic {c['num_fields']}-field stand-in, {c['num_rows']:,} rows "
            f"(planted {c['num_pairs']} pairs, {c['num_triples']} triples) — not the paper's data",
            extra={"planted": self.planted()},
        )
