"""GRDA (AIM eq. 21) against updates evaluated by hand from the closed form, the sparsity it produces, its
argument checks and the search-stage optimizer config."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ctrlab.optim import GRDA
from tests.helpers import ROOT


def soft(v: float, threshold: float) -> float:
    return math.copysign(max(abs(v) - threshold, 0.0), v)


def g(n: int, lr: float, c: float, mu: float) -> float:
    """AIM eq. 21's threshold after n gradients: c γ^{1/2} (n γ)^μ."""
    return c * lr**0.5 * (n * lr) ** mu


def test_grda_three_steps_by_hand():
    """γ = 0.5, c = 0.2, μ = 0.6 on three coordinates: 0 gets a steady gradient, 1 starts non-zero and gets
    none (the rising threshold eats it), 2 is pushed one way then back inside the threshold."""
    lr, c, mu = 0.5, 0.2, 0.6
    w = torch.nn.Parameter(torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64))
    opt = GRDA([w], lr=lr, c=c, mu=mu)
    grads = [[-1.0, 0.0, 0.8], [-1.0, 0.0, -0.7], [-1.0, 0.0, 0.0]]
    v = [0.0, 0.3, 0.0]  # α_0
    for n, grad in enumerate(grads, start=1):
        w.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
        v = [vi - lr * gi for vi, gi in zip(v, grad, strict=True)]
        expected = [soft(vi, g(n, lr, c, mu)) for vi in v]
        torch.testing.assert_close(w.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # the numbers themselves: g(1) = 0.2 * 0.5^1.1 = 0.09330, g(3) = 0.2 * 0.5^0.5 * 1.5^0.6 = 0.18039
    assert g(1, lr, c, mu) == pytest.approx(0.2 * 0.5**1.1)
    assert w[0].item() == pytest.approx(1.5 - g(3, lr, c, mu)) and w[0].item() == pytest.approx(1.3196, abs=1e-4)
    assert w[1].item() == pytest.approx(0.3 - g(3, lr, c, mu))  # shrinking towards 0 with no gradient
    assert w[2].item() == 0.0  # v = -0.05 lies inside the threshold: exactly zero


def test_grda_threshold_follows_a_changed_learning_rate():
    """Step 1 at γ1, step 2 at γ2: g = c γ1^{1/2+μ} 1^μ + c γ2^{1/2+μ} (2^μ - 1), v = α_0 - γ1 g1 - γ2 g2."""
    c, mu = 0.1, 0.7
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = GRDA([w], lr=0.4, c=c, mu=mu)
    w.grad = torch.tensor([0.5], dtype=torch.float64)
    opt.step()
    opt.param_groups[0]["lr"] = 0.1
    w.grad = torch.tensor([-0.2], dtype=torch.float64)
    opt.step()
    threshold = c * 0.4 ** (0.5 + mu) + c * 0.1 ** (0.5 + mu) * (2**mu - 1)
    assert w.item() == pytest.approx(soft(1.0 - 0.4 * 0.5 + 0.1 * 0.2, threshold), rel=1e-12)


def test_grda_zeroes_weights_without_signal_and_keeps_a_useful_one():
    """A linear model y = 2 x_0 - x_1 + noise with four gates α (init 0.6, as AutoFIS): GRDA drives the gates
    of the two inputs that carry no signal to exactly zero and keeps the two useful ones near their values;
    a parameter whose gradient is always zero reaches exactly zero once the threshold passes its value."""
    gen = torch.Generator().manual_seed(0)
    alpha = torch.nn.Parameter(torch.full((4,), 0.6))
    idle = torch.nn.Parameter(torch.tensor([0.05]))  # below the threshold after 400 steps, g = 0.067
    opt = GRDA([alpha, idle], lr=0.05, c=0.05, mu=0.6)
    for _ in range(400):
        x = torch.randn(256, 4, generator=gen)
        y = 2.0 * x[:, 0] - x[:, 1] + 0.5 * torch.randn(256, generator=gen)
        loss = ((x @ alpha - y) ** 2).mean() + 0.0 * idle.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert alpha[2].item() == 0.0 and alpha[3].item() == 0.0
    assert alpha[0].item() == pytest.approx(2.0, abs=0.2) and alpha[1].item() == pytest.approx(-1.0, abs=0.2)
    assert idle.item() == 0.0


@pytest.mark.parametrize(("kw", "message"), [(dict(lr=0.0), "lr"), (dict(c=-1.0), "c = -1.0"), (dict(mu=0.5), "mu")])
def test_grda_rejects_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        GRDA([torch.nn.Parameter(torch.zeros(1))], **(dict(lr=1.0, c=0.05, mu=0.6) | kw))


def test_adam_grda_config_puts_grda_on_the_arch_family():
    """The search-stage config: GRDA with AIM's Avazu (c, μ) for `arch`, Adam for the rest."""
    families = OmegaConf.load(ROOT / "configs" / "optimizer" / "adam_grda.yaml").families
    alpha = torch.nn.Parameter(torch.full((3,), 0.6))
    opt = instantiate(families.arch)([alpha])
    assert type(opt) is GRDA and (opt.defaults["c"], opt.defaults["mu"]) == (0.05, 0.6)
    assert instantiate(families.default)([torch.nn.Parameter(torch.zeros(2))]).__class__ is torch.optim.Adam
