"""The embedded default dataset: long-tailed categorical fields, labels from a known logistic model.

One generator, five planted mechanisms (``mechanism``). The common part, ``interactions`` (the default):

    logit(x) = b + sum_f w_f[x_f]                                      (first order)
                 + sum_{(a,c) in P}   <u_a[x_a], u_c[x_c]>                (planted 2nd-order pairs)
                 + sum_{(a,c,e) in T} sum_k u_a[x_a,k] u_c[x_c,k] u_e[x_e,k]  (planted 3rd-order triples)
    y ~ Bernoulli(sigmoid(logit))

Each of the three parts is rescaled to the standard deviation asked for (``first_order_std``, ``pair_std``,
``triple_std``) and b is solved so that the mean click rate is ``ctr``. The other mechanisms change the pair
part (and ``dynamic`` / ``context`` modulate the other parts), one paper's claim each:

``dynamic`` (DynInt)
    The strength of every planted term depends on the instance: pairs and triples are multiplied by the gate
    g(x) = 2 sigmoid(s(x)), s(x) = sum_{c in C} v_c[x_c] rescaled to std ``context_std``, where C are the
    ``num_context_fields`` fields of smallest vocabulary ("context" such as device or hour). g ranges over
    (0, 2) around 1, so a static interaction weight can only fit its average.
``memorize`` (OptInter)
    ``num_memorized`` of the ``num_pairs`` pairs carry an independent N(0, 1) weight per VALUE PAIR,
    M_ac[x_a, x_c] (full rank: no low-rank factorization fits it); they join two "mid-cardinality" fields
    (the middle half of the fields by vocabulary, so that value pairs repeat and can be memorized). The
    other planted pairs are factorized, <u_a[x_a], u_c[x_c]>; every pair not planted carries nothing (naive).
``functions`` (AIM)
    A sparse set of pairs, each with its own interaction function, cycling through the set
    ``planted_functions`` names (``FUNCTION_SETS``). ``standin`` (the default), on the one latent table u of
    every mechanism: inner <u_a, u_c>, kernel u_a^T K_ac u_c (K_ac a random [L, L] matrix) and weighted
    sum_k h_ac,k u_a,k u_c,k (element-wise product, then a random linear map). ``aim``: AIM's own four
    forms, each on its own latent table u^k (function-wise, as AIM's embeddings), so that a field in pairs of
    different functions carries unrelated vectors in each: inner <u^k_a, u^k_c>; outer
    (w_1^T u^k_a)(w_2^T u^k_c) with ONE (w_1, w_2) for every outer pair (AIM shares its w across
    interactions); vector_kernel sum_k h_ac,k u^k_a,k u^k_c,k (h_ac per pair: the same form as weighted);
    scalar_kernel s_ac <u^k_a, u^k_c> (after the rescaling below only the sign of s_ac is left, so it is
    inner on another table). Field f's latent vectors are non-zero in their first d_f of L = ``latent_dim``
    dims only, d_f uniform in 1..L: the useful embedding size differs by field.
``context`` (DPN)
    The parameters of the main fields depend on the values of ``num_context_fields`` context fields C (the
    smallest vocabularies): field f's first-order weight and planted pair p's term are multiplied by
    m_j(x) = prod_{c in C} r_jc[x_c], r_jc ~ N(1, ``context_std``^2) per (field or pair, context value), so
    a feature's effect changes size and even sign with the context.

In ``memorize`` and ``functions`` each pair's term is rescaled to unit std before the pair part is rescaled,
so every planted pair matters alike. Extra randomness of the four newer mechanisms comes from its own
stream, so the ids and the uniform draws behind the labels are those of ``interactions`` with the same seed.

The planted truth is stored in ``feature_map.extra["planted"]`` (always ``mechanism``, ``pairs`` and
``triples``; ``context_fields`` and ``gate`` for ``dynamic`` and ``context``; ``kinds`` aligned with
``pairs`` for ``memorize``; ``functions`` aligned with ``pairs`` and ``field_dims`` for ``functions``), so
a test can check that a search recovers it. ``feature_map.extra["oracle"]`` holds, per valid and test split,
the AUC and log loss of the true click probability sigmoid(logit) against the drawn labels: what the data
allows. Shapes mimic Criteo (39 fields), Avazu (24) and iPinYou (16) by config; ``field_names`` and fixed
``vocabs`` (one raw vocabulary size per field, in place of the log-uniform draw) make a stand-in of a data set
whose named fields matter (MovieLens-tag's users, movies and tags for DPN). Everything is a
deterministic function of ``seed``; encoding follows the real recipes: values seen fewer than ``min_count``
times in the train split become the field's OOV id.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import rankdata

from ctrlab.data.cache import SplitArrays, save_split
from ctrlab.data.schema import FeatureMap, Field

RECIPE_VERSION = 1
MECHANISMS = ("interactions", "dynamic", "memorize", "functions", "context")
# the ``functions`` mechanism's planted interaction functions (``planted_functions``), cycled over the pairs
FUNCTION_SETS = {
    "standin": ("inner", "kernel", "weighted"),  # one latent table per field, shared by its pairs
    "aim": ("inner", "outer", "vector_kernel", "scalar_kernel"),  # AIM's forms, a table per (field, function)
}


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


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula; tied scores get their mean rank."""
    pos = label > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(logit: np.ndarray, label: np.ndarray) -> float:
    """Mean natural-log binary cross-entropy of sigmoid(logit): log(1 + e^z) - y z, stable for any z."""
    return float(np.mean(np.logaddexp(0.0, logit) - label * logit))


def _scaled(x: np.ndarray, std: float) -> np.ndarray:
    """``x`` centred and rescaled to standard deviation ``std`` (zeros when either is 0)."""
    return np.zeros_like(x) if std == 0 or x.std() == 0 else (x - x.mean()) * (std / x.std())


class SyntheticSource:
    """Generates the synthetic dataset; see the module docstring for the model and its mechanisms."""

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
        mechanism: str = "interactions",
        num_context_fields: int = 2,
        context_std: float = 1.0,
        num_memorized: int = 4,
        field_names: list[str] | None = None,
        vocabs: list[int] | None = None,
        planted_functions: str = "standin",
    ) -> None:
        if mechanism not in MECHANISMS:
            raise ValueError(f"data.source.mechanism={mechanism!r} is not one of {', '.join(MECHANISMS)}")
        if num_pairs > num_fields * (num_fields - 1) // 2 or num_triples > len(
            list(combinations(range(num_fields), 3))
        ):
            raise ValueError(f"{name}: more planted pairs/triples than {num_fields} fields allow")
        if mechanism in ("dynamic", "context") and not 1 <= num_context_fields < num_fields:
            raise ValueError(
                f"data.source.num_context_fields={num_context_fields} must be in 1..{num_fields - 1} "
                f"(fewer than data.source.num_fields={num_fields})"
            )
        if planted_functions not in FUNCTION_SETS:
            raise ValueError(
                f"data.source.planted_functions={planted_functions!r} is not one of {', '.join(FUNCTION_SETS)}"
            )
        if context_std < 0:
            raise ValueError(f"data.source.context_std={context_std} must be >= 0")
        for key, given in (("field_names", field_names), ("vocabs", vocabs)):
            if given is not None and len(given) != num_fields:
                raise ValueError(
                    f"data.source.{key} has {len(given)} entries; data.source.num_fields={num_fields} needs one each"
                )
        if vocabs is not None and min(vocabs) < 2:
            raise ValueError(f"data.source.vocabs={list(vocabs)}: every field needs at least 2 values")
        mid = num_fields - 2 * (num_fields // 4)  # the middle half of the fields by vocabulary
        if mechanism == "memorize" and not 0 <= num_memorized <= min(num_pairs, mid * (mid - 1) // 2):
            raise ValueError(
                f"data.source.num_memorized={num_memorized} must be in 0..{min(num_pairs, mid * (mid - 1) // 2)}: "
                f"at most data.source.num_pairs={num_pairs} and the pairs of the {mid} mid-vocabulary fields"
            )
        self.name = name
        self.cfg = dict(locals())
        del self.cfg["self"], self.cfg["mid"], self.cfg["key"], self.cfg["given"]
        for key in ("field_names", "vocabs"):  # unset: not in the cache key, so older caches stay valid
            if self.cfg[key] is None:
                del self.cfg[key]
        if planted_functions == "standin":  # the default: not in the cache key either
            del self.cfg["planted_functions"]

    @property
    def field_names(self) -> list[str]:
        """``f0, f1, ...`` unless the config names the fields (a stand-in of a named data set)."""
        return list(self.cfg.get("field_names") or [f"f{i}" for i in range(self.cfg["num_fields"])])

    def cache_key(self) -> dict[str, Any]:
        return {"source": "synthetic", "recipe_version": RECIPE_VERSION, **self.cfg}

    def planted(self, vocabs: np.ndarray) -> dict[str, Any]:
        """The planted structure (field indices), drawn from ``seed`` and the fields' raw vocabularies [F]."""
        c = self.cfg
        rng = np.random.default_rng([c["seed"], 1])
        f = c["num_fields"]
        pairs = list(combinations(range(f), 2))
        triples = list(combinations(range(f), 3))
        pi = rng.choice(len(pairs), c["num_pairs"], replace=False)
        ti = rng.choice(len(triples), c["num_triples"], replace=False)
        out: dict[str, Any] = {
            "mechanism": c["mechanism"],
            "pairs": sorted([list(pairs[i]) for i in pi]),
            "triples": sorted([list(triples[i]) for i in ti]),
        }
        by_vocab = np.argsort(vocabs, kind="stable")  # field indices, smallest vocabulary first
        extra_rng = np.random.default_rng([c["seed"], 2])  # its own stream: the shared draws stay as they are
        if c["mechanism"] in ("dynamic", "context"):
            out["context_fields"] = sorted(by_vocab[: c["num_context_fields"]].tolist())
            out["gate"] = (
                "2 * sigmoid(s(x)), s(x) = sum_{c in context_fields} v_c[x_c] rescaled to std context_std; "
                "multiplies every planted pair and triple"
                if c["mechanism"] == "dynamic"
                else "prod_{c in context_fields} r_jc[x_c], r_jc ~ N(1, context_std^2); multiplies each field's "
                "first-order weight and each planted pair's term"
            )
        if c["mechanism"] == "memorize":
            mid = sorted(by_vocab[f // 4 : f - f // 4].tolist())
            mid_pairs = list(combinations(mid, 2))
            memorized = [list(mid_pairs[i]) for i in extra_rng.choice(len(mid_pairs), c["num_memorized"], False)]
            rest = [p for p in out["pairs"] if p not in memorized]
            factorized = [rest[i] for i in extra_rng.choice(len(rest), c["num_pairs"] - c["num_memorized"], False)]
            kinds = {**{tuple(p): "memorized" for p in memorized}, **{tuple(p): "factorized" for p in factorized}}
            out["pairs"] = sorted(memorized + factorized)
            out["kinds"] = [kinds[tuple(p)] for p in out["pairs"]]
        if c["mechanism"] == "functions":
            functions = FUNCTION_SETS[c.get("planted_functions", "standin")]
            out["functions"] = [functions[i % len(functions)] for i in extra_rng.permutation(c["num_pairs"])]
            out["field_dims"] = extra_rng.integers(1, c["latent_dim"] + 1, size=f).tolist()
        return out

    def _vocabs(self, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        if "vocabs" in c:  # a stand-in of a data set whose fields' sizes matter (MovieLens' users, tags)
            return np.array(c["vocabs"], dtype=int)
        return np.exp(rng.uniform(np.log(c["min_vocab"]), np.log(c["max_vocab"]), c["num_fields"])).astype(int)

    def _draw_ids(self, vocabs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        raw = np.empty((c["num_rows"], c["num_fields"]), dtype=np.int64)
        for f, v in enumerate(vocabs):  # build time only
            p = 1.0 / np.arange(1, v + 1) ** c["zipf_alpha"]
            raw[:, f] = rng.choice(v, size=c["num_rows"], p=p / p.sum())
        return raw

    def _logits(self, raw: np.ndarray, planted: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        """The true logit [N] of every row (module docstring), ``b`` included."""
        c = self.cfg
        n, num_f = raw.shape
        vmax = int(raw.max()) + 1
        w = rng.normal(size=(num_f, vmax))  # first-order weights
        u = rng.normal(size=(num_f, vmax, c["latent_dim"]))  # latent vectors of the planted terms
        extra_rng = np.random.default_rng([c["seed"], 3])  # the newer mechanisms' draws, apart from ``rng``
        mechanism = c["mechanism"]
        pair_u = u  # the pairs' latent vectors: u, or a table per (function, field) [K, F, V, L] under ``aim``
        if mechanism == "functions":  # field f's latent vectors use their first d_f dims only
            useful = (np.arange(c["latent_dim"]) < np.array(planted["field_dims"])[:, None])[:, None, :]  # [F, 1, L]
            u = pair_u = u * useful
            if c.get("planted_functions") == "aim":
                pair_u = extra_rng.normal(size=(len(FUNCTION_SETS["aim"]), *u.shape)) * useful
        fields = np.arange(num_f)
        first_terms = w[fields, raw]  # [N, F]
        pair_terms = (
            np.stack(  # [N, P]
                [self._pair_term(planted, i, raw, pair_u, extra_rng) for i in range(len(planted["pairs"]))], axis=1
            )
            if planted["pairs"]
            else np.zeros((n, 0))
        )
        triple = np.zeros(n)
        for a, b, e in planted["triples"]:
            triple += (u[a, raw[:, a]] * u[b, raw[:, b]] * u[e, raw[:, e]]).sum(axis=1)

        if mechanism == "dynamic":
            ctx = planted["context_fields"]
            s = sum(extra_rng.normal(size=vmax)[raw[:, f]] for f in ctx)  # s(x) = sum_c v_c[x_c]: [N]
            gate = 2.0 * expit(_scaled(s, c["context_std"]))  # [N]
            pair_terms, triple = pair_terms * gate[:, None], triple * gate
        if mechanism == "context":
            ctx = planted["context_fields"]

            def scales(num: int) -> np.ndarray:  # m_j(x) = prod_c r_jc[x_c] for ``num`` parameters j: [N, num]
                r = 1.0 + c["context_std"] * extra_rng.normal(size=(len(ctx), vmax, num))
                return np.prod([r[i, raw[:, f]] for i, f in enumerate(ctx)], axis=0)

            first_terms, pair_terms = first_terms * scales(num_f), pair_terms * scales(pair_terms.shape[1])

        pair = np.zeros(n)
        for term in pair_terms.T:  # added in turn, not by ``sum(axis=1)``: keeps ``interactions`` bit-identical
            pair += term
        z = (
            _scaled(first_terms.sum(axis=1), c["first_order_std"])
            + _scaled(pair, c["pair_std"])
            + _scaled(triple, c["triple_std"])
        )
        bias = brentq(lambda b: expit(z + b).mean() - c["ctr"], -30.0, 30.0)
        return z + bias

    def _pair_term(
        self, planted: dict[str, Any], i: int, raw: np.ndarray, u: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Planted pair i's term [N]: <u_a, u_c> in ``interactions`` / ``dynamic`` / ``context``; in ``memorize``
        and ``functions`` its kind's or function's term, rescaled to unit std."""
        a, b = planted["pairs"][i]
        mechanism = self.cfg["mechanism"]
        if mechanism == "functions" and u.ndim == 4:  # ``planted_functions: aim``: the function's own table
            k = FUNCTION_SETS["aim"].index(planted["functions"][i])
            ua, ub = u[k, a, raw[:, a]], u[k, b, raw[:, b]]  # [N, L]
        else:
            ua, ub = u[a, raw[:, a]], u[b, raw[:, b]]  # [N, L]
        latent = ua.shape[1]
        if mechanism == "memorize" and planted["kinds"][i] == "memorized":
            table = rng.normal(size=(raw[:, a].max() + 1, raw[:, b].max() + 1))  # M_ab: a weight per value pair
            return _scaled(table[raw[:, a], raw[:, b]], 1.0)
        if mechanism == "functions":
            function = planted["functions"][i]
            if function == "kernel":
                kernel = rng.normal(size=(latent, latent)) / np.sqrt(latent)  # K_ab: [L, L]
                return _scaled(np.einsum("nk,kl,nl->n", ua, kernel, ub), 1.0)
            if function in ("weighted", "vector_kernel"):  # the same form: sum_k h_ab,k u_a,k u_b,k
                return _scaled(ua * ub @ rng.normal(size=latent), 1.0)
            if function == "outer":  # (w_1ᵀ u_a)(w_2ᵀ u_b), one (w_1, w_2) for every outer pair: its own stream
                w = np.random.default_rng([self.cfg["seed"], 4]).normal(size=(2, latent))
                return _scaled((ua @ w[0]) * (ub @ w[1]), 1.0)
            if function == "scalar_kernel":  # k_ab <u_a, u_b>: after the rescaling only the sign of k_ab is left
                return _scaled(rng.normal() * (ua * ub).sum(axis=1), 1.0)
            return _scaled((ua * ub).sum(axis=1), 1.0)
        term = (ua * ub).sum(axis=1)
        return _scaled(term, 1.0) if mechanism == "memorize" else term

    def build(self, out_dir: Path) -> FeatureMap:
        c = self.cfg
        rng = np.random.default_rng([c["seed"], 0])
        vocabs = self._vocabs(rng)
        raw = self._draw_ids(vocabs, rng)
        planted = self.planted(vocabs)
        uniform = rng.random(c["num_rows"])  # drawn before the weights, as ever: keeps the draws of old caches
        logit = self._logits(raw, planted, rng)
        labels = (uniform < expit(logit)).astype(np.float32)
        splits = split_indices(c["num_rows"], list(c["split"]), rng)
        ids, vocab_sizes = threshold_encode(raw, splits["train"], c["min_count"])
        for split, rows in splits.items():
            save_split(out_dir, split, SplitArrays(ids=ids[rows], labels=labels[rows]))
        oracle = {  # the true model's metrics: what the data allows
            s: {"auc": auc(logit[rows], labels[rows]), "logloss": log_loss(logit[rows], labels[rows])}
            for s, rows in splits.items()
            if s != "train"
        }
        return FeatureMap(
            dataset=self.name,
            fields=[Field(name, v) for name, v in zip(self.field_names, vocab_sizes, strict=True)],
            split_sizes={s: len(r) for s, r in splits.items()},
            description=f"synthetic {c['num_fields']}-field stand-in ({c['mechanism']}), {c['num_rows']:,} rows "
            f"(planted {c['num_pairs']} pairs, {c['num_triples']} triples) — not the paper's data",
            extra={"planted": planted, "oracle": oracle},
        )
