"""AIM / AutoFIS building blocks against direct slow computations of their equations: the FIS/IFS gate (eqs. 12-14
with eq. 20), the interaction functions at orders 2-4 (§3.3, §4.2.3), function-wise embeddings (eq. 14), EDS
(eqs. 15-18) with the mixed-size re-train embedding, Algorithm 1's candidate pools and statistics_AUC (§4.4.2)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ctrlab.data.synthetic import auc
from ctrlab.nn.eds import EmbeddingDimensionSearch, MixedDimEmbedding, kept_dimensions
from ctrlab.nn.gate import InteractionGate
from ctrlab.nn.interaction_functions import FUNCTIONS, FunctionWiseEmbedding, InteractionFunctions
from ctrlab.report.statistics_auc import statistics_auc
from ctrlab.search.high_order import all_pairs, combine, next_pool, top_k
from tests.helpers import random_batch

# --- FIS / IFS gate ----------------------------------------------------------------------------------------


def test_gate_is_alpha_times_batch_norm_without_affine():
    """Eq. 12 + eq. 20: α_g (z_g - mean_B z_g) / sqrt(var_B z_g + ε), θ = 1 and δ = 0; α the only parameter."""
    torch.manual_seed(0)
    gate = InteractionGate(5)
    assert [name for name, _ in gate.named_parameters()] == ["alpha"]
    assert ((gate.alpha - 0.6).abs() <= 1e-3).all()
    z = torch.randn(64, 5) * 3 + 1
    out = gate(z)
    slow = torch.stack(
        [gate.alpha[g] * (z[:, g] - z[:, g].mean()) / torch.sqrt(z[:, g].var(unbiased=False) + 1e-3) for g in range(5)],
        dim=1,
    )
    torch.testing.assert_close(out, slow)
    gate.eval()  # inference: the running statistics, still without scale and shift
    bn = gate.norm
    torch.testing.assert_close(gate(z), gate.alpha * (z - bn.running_mean) / torch.sqrt(bn.running_var + 1e-3))


def test_gate_alpha_zero_closes_the_interaction():
    gate = InteractionGate(3)
    with torch.no_grad():
        gate.alpha[1] = 0.0
    out = gate(torch.randn(16, 3))
    assert (out[:, 1] == 0).all() and (out[:, [0, 2]] != 0).all()


# --- interaction functions -----------------------------------------------------------------------------------


def slow_function(name: str, module: InteractionFunctions, emb: torch.Tensor, unit: int) -> torch.Tensor:
    """One slot computed from its definition, one interaction at a time. emb [B, F, E, d] -> [B]."""
    k = FUNCTIONS.index(name)
    fields = module.units[unit].tolist()
    vecs = [emb[:, f, k if emb.shape[2] > 1 else 0] for f in fields]  # p x [B, d]
    if name == "outer" and len(fields) == 2:  # <w1 w2ᵀ, e_i e_jᵀ>: the rank-1 linear layer on the outer product
        w1, w2 = module.outer_weight
        outer = torch.einsum("bi,bj->bij", vecs[0], vecs[1])  # [B, d, d]
        return (outer * torch.outer(w1, w2)).sum(dim=(1, 2))
    if name == "outer":
        return torch.stack([v @ w for v, w in zip(vecs, module.outer_weight, strict=True)]).prod(dim=0)
    product = vecs[0]
    for v in vecs[1:]:
        product = product * v
    # position of this unit among the function's units: its kernel row
    row = (getattr(module, f"units_{name}") == unit).nonzero().item() if name.endswith("kernel") else None
    if name == "inner":
        return product.sum(-1)
    if name == "vector_kernel":
        return product @ module.vector_kernel[row]
    return module.scalar_kernel[row] * product.sum(-1)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("tables", [1, 4])
def test_interaction_functions_match_their_definitions(order, tables):
    """All four functions at order p, function-wise (E = 4) or shared (E = 1) embeddings, a random subset of
    slots selected; kernels and projections perturbed away from their initial values."""
    gen = torch.Generator().manual_seed(order * 10 + tables)
    num_fields, dim = 6, 5
    units = torch.tensor(list(itertools.combinations(range(num_fields), order))[:7])  # [U, p]
    selected = torch.rand(units.shape[0], len(FUNCTIONS), generator=gen) < 0.6
    selected[0] = True  # every function has at least one interaction
    module = InteractionFunctions(units, dim, selected)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen))
    emb = torch.randn(8, num_fields, tables, dim, generator=gen)
    out = module(emb)
    assert out.shape == (8, int(selected.sum()))
    for s, (unit, k) in enumerate(module.slots.tolist()):
        torch.testing.assert_close(out[:, s], slow_function(FUNCTIONS[k], module, emb, unit), rtol=1e-4, atol=1e-5)
    # parameters only for the slots that exist: kernels per selected interaction, w_q per position
    counts = selected.sum(dim=0)
    assert module.vector_kernel.shape == (counts[FUNCTIONS.index("vector_kernel")], dim)
    assert module.scalar_kernel.shape == (counts[FUNCTIONS.index("scalar_kernel")],)
    assert module.outer_weight.shape == (order, dim)


def test_interaction_functions_all_slots_view_as_units_by_functions():
    units = all_pairs(4)
    module = InteractionFunctions(units, 3)
    emb = torch.randn(2, 4, 4, 3)
    out = module(emb).view(2, units.shape[0], len(FUNCTIONS))  # [B, U, m]
    inner = (emb[:, units[:, 0], 0] * emb[:, units[:, 1], 0]).sum(-1)  # kernels at 1: = inner on their own tables
    torch.testing.assert_close(out[..., 0], inner)
    torch.testing.assert_close(out[..., 2], (emb[:, units[:, 0], 2] * emb[:, units[:, 1], 2]).sum(-1))


def test_interaction_functions_reject_bad_shapes():
    with pytest.raises(ValueError, match="selected must be"):
        InteractionFunctions(all_pairs(3), 2, torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="order p >= 2"):
        InteractionFunctions(torch.zeros(3, 1, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="E = 1"):
        InteractionFunctions(all_pairs(3), 2)(torch.randn(2, 3, 2, 2))


def test_function_wise_embedding_has_one_table_per_function(tiny_feature_map):
    torch.manual_seed(0)
    fwe = FunctionWiseEmbedding(tiny_feature_map, 4, 3, 0.1)
    batch = random_batch(tiny_feature_map, 6)
    emb = fwe(batch)  # [B, F, 4, 3]
    assert emb.shape == (6, tiny_feature_map.num_fields, 4, 3)
    rows = batch["ids"] + fwe.offsets  # [B, F]
    for k in range(4):  # table k is columns k*d..(k+1)*d of the stored table
        torch.testing.assert_close(emb[:, :, k], fwe.table.weight[rows][..., 3 * k : 3 * (k + 1)])
    assert sum(p.numel() for p in fwe.parameters()) == 4 * 3 * tiny_feature_map.total_vocab


# --- EDS -----------------------------------------------------------------------------------------------------


def test_eds_scales_normalised_dimensions_by_the_fields_beta():
    """Eq. 15 with BN (no affine) per (field, table, dimension); β shared by a field's tables."""
    torch.manual_seed(0)
    eds = EmbeddingDimensionSearch(num_fields=3, num_tables=2, dim=4)
    assert [name for name, _ in eds.named_parameters()] == ["beta"]
    with torch.no_grad():
        eds.beta.copy_(torch.randn(3, 4))
    emb = torch.randn(32, 3, 2, 4) * 2 + 0.5
    out = eds(emb)
    for f, t, j in itertools.product(range(3), range(2), range(4)):
        x = emb[:, f, t, j]
        torch.testing.assert_close(out[:, f, t, j], eds.beta[f, j] * (x - x.mean()) / torch.sqrt(x.var(False) + 1e-3))


def test_kept_dimensions_are_the_nonzero_betas_in_order():
    beta = torch.tensor([[0.0, 0.3, 0.0, -0.1], [0.2, 0.1, 0.5, 0.4], [0.0, 0.0, 0.0, 0.0]])
    assert kept_dimensions(beta) == [[1, 3], [0, 1, 2, 3], []]  # φ_i (eq. 17); d_i = 2, 4, 0 (eq. 16)


def test_mixed_dim_embedding_places_each_fields_short_rows_at_their_positions(tiny_feature_map):
    """Field i stores d_i values per feature and table (no padding parameters); the output puts value Map_i(j)
    at position j ∈ φ_i and 0 elsewhere (eq. 18 read backwards)."""
    torch.manual_seed(0)
    kept = [[1, 3], [0, 1, 2, 3], [], [2], [0, 3]]
    emb_layer = MixedDimEmbedding(tiny_feature_map, kept, dim=4, num_tables=2, init_std=0.1)
    vocab = tiny_feature_map.vocab_sizes
    sizes = [len(k) for k in kept]
    assert emb_layer.weight.numel() == 2 * sum(v * d for v, d in zip(vocab, sizes, strict=True))
    batch = random_batch(tiny_feature_map, 8, values=True)
    out = emb_layer(batch)  # [B, F, 2, 4]
    # slow: cut the flat parameter into per-(table, field) tables [vocab_f, d_f] and pad by hand
    tables, start = {}, 0
    for t in range(2):
        for f, (v, d) in enumerate(zip(vocab, sizes, strict=True)):
            tables[t, f] = emb_layer.weight[start : start + v * d].view(v, d)
            start += v * d
    for b, f, t in itertools.product(range(8), range(len(kept)), range(2)):
        expected = torch.zeros(4)
        expected[kept[f]] = tables[t, f][batch["ids"][b, f]] * batch["values"][b, f]
        torch.testing.assert_close(out[b, f, t], expected)
    out.sum().backward()  # gradients reach only the stored values
    assert emb_layer.weight.grad is not None


def test_mixed_dim_embedding_rejects_bad_positions(tiny_feature_map):
    with pytest.raises(ValueError, match="field 'f1'.*strictly increasing"):
        MixedDimEmbedding(tiny_feature_map, [[0], [2, 1], [], [0], [0]], dim=4, num_tables=1, init_std=0.1)
    with pytest.raises(ValueError, match="3 fields given, the data has 5"):
        MixedDimEmbedding(tiny_feature_map, [[0], [1], [2]], dim=4, num_tables=1, init_std=0.1)


# --- Algorithm 1 -----------------------------------------------------------------------------------------------


def test_top_k_ranks_kept_interactions_by_absolute_alpha():
    units = all_pairs(4)  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    alpha = torch.tensor([0.1, 0.0, -0.9, 0.5, 0.0, 0.5])
    assert top_k(units, alpha, 3).tolist() == [[0, 3], [1, 2], [2, 3]]  # |-0.9|, then the tie in index order
    assert top_k(units, alpha, 10).tolist() == [[0, 3], [1, 2], [2, 3], [0, 1]]  # zeros never kept


def test_combine_by_hand():
    """n = 5, top pairs (0,3) and (1,3): (0,3) + {1,2,4} and (1,3) + {0,2,4}; (0,1,3) appears twice."""
    pool = combine(torch.tensor([[0, 3], [1, 3]]), 5)
    assert pool.tolist() == [[0, 1, 3], [0, 2, 3], [0, 3, 4], [1, 2, 3], [1, 3, 4]]
    assert combine(torch.tensor([[0, 1, 3]]), 5).tolist() == [[0, 1, 2, 3], [0, 1, 3, 4]]


def algorithm_1_by_hand(units: list[tuple], alpha: list[list[float]], num_fields: int) -> dict[tuple, set[int]]:
    """The authors' ``get_topK`` + ``get_high_order`` as plain loops: per function j, the interactions with
    α_j != 0 sorted by |α_j| (stable), the first floor(n/2), each extended by every field it lacks, sorted.
    -> {interaction: the functions whose pool holds it}."""
    pool: dict[tuple, set[int]] = {}
    for j in range(len(alpha[0])):
        ranked = sorted((u for u, a in zip(units, alpha, strict=True) if a[j] != 0),
                        key=lambda u: -abs(alpha[units.index(u)][j]))  # fmt: skip
        for top in ranked[: num_fields // 2]:
            for f in range(num_fields):
                if f not in top:
                    pool.setdefault(tuple(sorted((*top, f))), set()).add(j)
    return pool


@pytest.mark.parametrize("num_fields", [5, 8, 13])
def test_next_pool_is_algorithm_1_per_function(num_fields):
    """Orders 2 -> 3 -> 4 from random α with a third of the slots dropped (α = 0): the pool and which functions
    search each of its interactions equal the plain-loop Algorithm 1; at most n²/2 candidates per function."""
    gen = torch.Generator().manual_seed(num_fields)
    units = all_pairs(num_fields)
    for order in (3, 4):
        alpha = torch.randn(units.shape[0], 4, generator=gen)
        alpha[torch.rand(alpha.shape, generator=gen) < 1 / 3] = 0.0
        pool, candidates = next_pool(units, alpha, num_fields)
        slow = algorithm_1_by_hand([tuple(u) for u in units.tolist()], alpha.tolist(), num_fields)
        assert pool.shape[1] == order and [tuple(r) for r in pool.tolist()] == sorted(slow)
        assert [set(torch.nonzero(c).flatten().tolist()) for c in candidates] == [slow[k] for k in sorted(slow)]
        assert (candidates.sum(0) <= num_fields**2 / 2).all()
        units = pool


def test_next_pool_of_a_hand_made_artifact():
    """n = 5 (k = 2), pairs (0,1) (0,2) (1,3) (2,4) with α' over (inner, outer): inner's top 2 by |α| are (2,4)
    (-0.9) and (0,1) (0.5, before (1,3)'s 0.5 by index); outer keeps only (0,2)."""
    units = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 4]])
    alpha = torch.tensor([[0.5, 0.0], [0.1, 0.7], [0.5, 0.0], [-0.9, 0.0]])
    pool, candidates = next_pool(units, alpha, 5)
    inner = {(0, 1, 2), (0, 1, 3), (0, 1, 4), (0, 2, 4), (1, 2, 4), (2, 3, 4)}
    outer = {(0, 1, 2), (0, 2, 3), (0, 2, 4)}
    assert [tuple(r) for r in pool.tolist()] == sorted(inner | outer)
    assert [[tuple(r) in inner, tuple(r) in outer] for r in pool.tolist()] == candidates.tolist()


def test_next_pool_when_everything_is_kept_on_24_fields_stays_small():
    """The OOM case: 24 fields, every slot of orders 2 and 3 kept, 4 functions. Each function's pool has at most
    k (n - p + 1) = 12 x 22 (order 3) and 12 x 21 (order 4) candidates <= n²/2 = 288 (fewer when two tops share
    an extension), not C(24, 4) = 10626, and the union at most 4 x 288."""
    gen = torch.Generator().manual_seed(0)
    units = all_pairs(24)
    for order, per_function in ((3, 12 * 22), (4, 12 * 21)):
        units, candidates = next_pool(units, torch.randn(len(units), 4, generator=gen), 24)
        assert units.shape[1] == order
        assert (candidates.sum(0) <= per_function).all() and len(units) <= 4 * 24**2 / 2
    pool, candidates = next_pool(all_pairs(24), torch.randn(276, 1, generator=gen), 24)  # AutoFIS: one function
    assert len(pool) <= 12 * 22 <= 24**2 / 2 and candidates.all()


# --- statistics_AUC ----------------------------------------------------------------------------------------------


def test_statistics_auc_matches_a_dictionary_predictor():
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 4, (2000, 3)), rng.integers(0, 5, (1000, 3))  # value 4 never seen in training
    y_train = (rng.random(2000) < 0.1 + 0.5 * (train[:, 0] == train[:, 2])).astype(np.float32)
    y_test = (rng.random(1000) < 0.1 + 0.5 * (test[:, 0] == test[:, 2])).astype(np.float32)
    prior = y_train.mean()
    for units in (np.array([[0, 1], [0, 2], [1, 2]]), np.array([[0, 1, 2]])):  # one order per call
        result = statistics_auc(train, y_train, test, y_test, units)
        for u, fields in enumerate(units):
            counts: dict[tuple, list[float]] = {}
            for row, y in zip(train[:, fields], y_train, strict=True):
                counts.setdefault(tuple(row), []).append(y)
            pred = np.array([np.mean(counts[tuple(r)]) if tuple(r) in counts else prior for r in test[:, fields]])
            assert result[u] == pytest.approx(auc(pred, y_test), abs=1e-12)
    pairs = statistics_auc(train, y_train, test, y_test, np.array([[0, 1], [0, 2], [1, 2]]))
    assert pairs[1] == pairs.max()  # the planted pair (0, 2) carries the signal
