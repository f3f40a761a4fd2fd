"""DPN's operations (src/ctrlab/nn/dpo.py) against direct per-instance computations of the generated weights, and
the paper's two relations: a DPO layer is a CrossNet layer (§2.3), FM is the self-excluded field DPO (App. C)."""

from __future__ import annotations

import pytest
import torch

from ctrlab.nn.cross import CrossNetworkV1
from ctrlab.nn.dpo import AGGREGATIONS, FeatureDPO, FieldDNN, FieldDPO, GeneratorSpec, weight_generator
from ctrlab.nn.fm import FMInteraction

B, M, C, N = 5, 6, 4, 3  # batch, input size m, output size c, context size n

SPECS = {
    "hyperdense": GeneratorSpec("hyperdense"),
    "mok_identity": GeneratorSpec("mok", kernels=3, sigma="identity", heads=1),
    "mok_sigmoid": GeneratorSpec("mok", kernels=3, sigma="sigmoid", heads=1),
    "mok_softmax": GeneratorSpec("mok", kernels=3, sigma="softmax", heads=1),
    "mok_2_heads": GeneratorSpec("mok", kernels=3, sigma="softmax", heads=2),
    "md": GeneratorSpec("md", kernels=3, sigma="sigmoid", rank=2),
}


def sigma(v: torch.Tensor, name: str) -> torch.Tensor:
    return {"identity": lambda t: t, "sigmoid": torch.sigmoid, "softmax": lambda t: torch.softmax(t, -1)}[name](v)


def direct_weights(gen, spec: GeneratorSpec, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W(z) [c, m] and b(z) [c] of one instance z [n], summed term by term from the stored parameters."""
    if spec.kind == "hyperdense":  # eq. 4: W(z) = sum_j z_j Ŵ_j, b(z) = sum_j z_j W̃_j
        w = sum(z[j] * gen.kernel[j].T for j in range(len(z)))
        return w, sum(z[j] * gen.bias_kernel[j] for j in range(len(z)))
    if spec.kind == "md":  # P (sum_k s_k Φ_k) Q
        s = sigma(gen.gate.weight @ z + gen.gate.bias, spec.sigma)
        phi = sum(s[k] * gen.core[k].T for k in range(spec.kernels))
        return gen.p.weight @ phi @ gen.q.weight, sum(s[k] * gen.bias_kernel[k] for k in range(spec.kernels))
    h, l = spec.heads, spec.kernels  # mok: a block-diagonal W, head a mixing the shared kernels by its own s_a
    logits = (gen.gate.weight @ z + gen.gate.bias).view(h, l)
    w, b = torch.zeros(C, M), torch.zeros(C)
    for a in range(h):
        s = sigma(logits[a], spec.sigma)
        rows, cols = slice(a * C // h, (a + 1) * C // h), slice(a * M // h, (a + 1) * M // h)
        w[rows, cols] = sum(s[k] * gen.kernel[k].T for k in range(l))
        b[rows] = sum(s[k] * gen.bias_kernel[k] for k in range(l))
    return w, b


@pytest.mark.parametrize("name", SPECS)
def test_each_generator_is_its_per_instance_weights_applied(name):
    torch.manual_seed(0)
    spec = SPECS[name]
    gen = weight_generator(spec, M, C, N)
    x, z = torch.randn(B, M), torch.randn(B, N)
    expected = []
    for i in range(B):
        w, b = direct_weights(gen, spec, z[i])
        expected.append(w @ x[i] + b)
    torch.testing.assert_close(gen(x, z), torch.stack(expected))
    w, b = gen.weights(gen.code(z))  # the materialised form agrees too
    assert w.shape == (B, C, M)
    torch.testing.assert_close(torch.einsum("bcm,bm->bc", w, x) + b, torch.stack(expected))


def test_static_part_adds_a_plain_linear_map():
    torch.manual_seed(0)
    dpo = FeatureDPO(M, C, N, GeneratorSpec("md", kernels=2, sigma="softmax", rank=3, static=True))  # W_0 + PφQ
    x, z = torch.randn(B, M), torch.randn(B, N)
    torch.testing.assert_close(dpo(x, z), dpo.generator(x, z) + x @ dpo.static.weight.T + dpo.static.bias)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("name", ["hyperdense", "mok_2_heads", "md"])
def test_field_dpo_aggregates_as_its_equation(aggregation, name):
    torch.manual_seed(0)
    spec, t = SPECS[name], 4
    dpo = FieldDPO(M, C, N, t, t, aggregation, spec)
    with torch.no_grad():  # a learned mix away from its uniform init
        for p in dpo.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, z = torch.randn(B, t, M), torch.randn(B, t, N)
    gen = dpo.generator
    y = dpo(x, z)
    for bi in range(B):
        for i in range(t):
            if aggregation == "concat":  # one weight from the concatenated context [t*n]
                w, b = direct_weights(gen, spec, z[bi].flatten())
            else:
                weights = [direct_weights(gen, spec, z[bi, j]) for j in range(t)]
                if aggregation == "summation":
                    a = torch.full((t,), 1 / t)
                elif aggregation == "self":
                    a = torch.eye(t)[i]
                elif aggregation == "excluded":
                    a = (1 - torch.eye(t)[i]) / (t - 1)
                elif aggregation == "attention":
                    a = torch.softmax(torch.stack([dpo.attention[j] @ z[bi, j] for j in range(t)]), 0)
                else:
                    a = dpo.mix[i]
                # eq. 3: the weights are aggregated (W and b linear in the code, so this is the code's mix)
                w = sum(a[j] * weights[j][0] for j in range(t))
                b = sum(a[j] * weights[j][1] for j in range(t))
            torch.testing.assert_close(y[bi, i], w @ x[bi, i] + b)


def test_field_dnn_is_field_mix_then_linear_map():
    torch.manual_seed(0)
    layer, x = FieldDNN(M, C, 4), torch.randn(B, 4, M)
    expected = torch.stack([layer.field_mix @ x[b] @ layer.linear for b in range(B)])
    torch.testing.assert_close(layer(x), expected)


def test_a_dpo_with_a_rank_one_generator_from_x0_is_a_cross_layer():
    """§2.3: z = x0, g one layer whose only free part is w in R^n (Ŵ[j, i, c] = δ_jc w_i, W̃ = 0), static
    implicit part B = I and bias b_l: y = x0 (w^T x_l) + b_l + x_l, DCN's eq. 3 — stacked, the whole CrossNet."""
    torch.manual_seed(0)
    d, layers = 6, 3
    cross = CrossNetworkV1(d, layers)
    with torch.no_grad():
        cross.bias.normal_()
    dpos = []
    for w, b in zip(cross.weight, cross.bias, strict=True):
        dpo = FeatureDPO(d, d, d, GeneratorSpec("hyperdense", static=True))
        with torch.no_grad():
            dpo.generator.kernel.copy_(torch.einsum("jc,i->jic", torch.eye(d), w))
            dpo.generator.bias_kernel.zero_()
            dpo.static.weight.copy_(torch.eye(d))
            dpo.static.bias.copy_(b)
        dpos.append(dpo)
    x0 = torch.randn(B, d)
    x = x0
    for dpo in dpos:
        x = dpo(x, x0)
    torch.testing.assert_close(x, cross(x0))


def test_fm_is_the_self_excluded_field_dpo_with_matrix_product_and_identity():
    """App. C: f = matrix product, g = identity (Ŵ the identity, so W(z) = z^T), context the other fields:
    y_i = 1/(F-1) sum_{j != i} x_i^T x_j, and (F-1)/2 sum_i y_i = sum_{i<j} <x_i, x_j>, FM's pair term."""
    torch.manual_seed(0)
    f, d = 5, 4
    dpo = FieldDPO(d, 1, d, f, f, "excluded", GeneratorSpec("hyperdense"))
    with torch.no_grad():
        dpo.generator.kernel.copy_(torch.eye(d).unsqueeze(-1))  # [n, m, 1]: W(z) = z^T
        dpo.generator.bias_kernel.zero_()
    emb = torch.randn(B, f, d)
    y = dpo(emb, emb).squeeze(-1)  # [B, F]
    torch.testing.assert_close(y.sum(1) * (f - 1) / 2, FMInteraction()(emb).sum(-1))


def test_bad_generator_settings_name_the_key():
    with pytest.raises(ValueError, match=r"model\.generator\.kind='mlp'; allowed: hyperdense, mok, md"):
        GeneratorSpec.from_config({"kind": "mlp"})
    with pytest.raises(ValueError, match=r"kind=md takes \['kernels', 'rank', 'sigma'\].*got \['heads', 'kernels'"):
        GeneratorSpec.from_config({"kind": "md", "kernels": 4, "sigma": "softmax", "heads": 1})
    with pytest.raises(ValueError, match=r"model\.generator\.sigma='tanh'; allowed: identity, sigmoid, softmax"):
        GeneratorSpec.from_config({"kind": "mok", "kernels": 4, "sigma": "tanh", "heads": 1})
    with pytest.raises(ValueError, match=r"model\.generator has unknown keys \['layers'\]"):
        GeneratorSpec.from_config({"kind": "hyperdense", "layers": 2})
    with pytest.raises(ValueError, match=r"heads=3 must divide .* got 6 -> 4"):
        weight_generator(GeneratorSpec("mok", kernels=2, sigma="softmax", heads=3), 6, 4, 3)
    with pytest.raises(ValueError, match=r"model\.aggregation='max'; allowed: summation, self"):
        FieldDPO(M, C, N, 3, 3, "max", SPECS["md"])
    with pytest.raises(ValueError, match=r"model\.aggregation=self .* 2 fields for 3 input fields"):
        FieldDPO(M, C, N, 3, 2, "self", SPECS["md"])
