"""EnergyScore: s = −∇ₓE against exact oracles (float64), its derivatives, and its call conventions."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from scorematch.distributions import GaussianMixture
from scorematch.energy import EnergyScore
from scorematch.objectives import ism, ssm
from scorematch.objectives.sliced import projections

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixture() -> GaussianMixture:
    return GaussianMixture(
        means=[[-2.0, 0.0, 1.0], [2.0, 1.0, 0.0]],
        covs=[
            torch.diag(torch.tensor([0.5, 0.3, 0.8])).tolist(),
            [[0.4, 0.1, 0.0], [0.1, 0.6, 0.2], [0.0, 0.2, 0.7]],
        ],
        weights=[0.6, 0.4],
        dtype=F64,
    )


def energy_mlp(seed: int = 0, d: int = 3) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(d, 16), nn.SiLU(), nn.Linear(16, 16), nn.Softplus(), nn.Linear(16, 1)
        ).to(F64)


def test_score_of_negative_log_density_is_the_exact_score():
    mix = mixture()
    x = mix.sample(200, generator=gen(0))
    model = EnergyScore(lambda y: -mix.log_prob(y))  # E = −log p; Z = 1
    torch.testing.assert_close(model(x), mix.score(x), rtol=1e-10, atol=1e-10)
    # Adding a constant to E (another normaliser) leaves the score unchanged.
    shifted = EnergyScore(lambda y: 7.5 - mix.log_prob(y))
    torch.testing.assert_close(shifted(x), mix.score(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.energy(x), -mix.log_prob(x))


def test_time_argument_is_passed_only_when_given_and_b1_energies_accepted():
    x = torch.randn(5, 2, generator=gen(1), dtype=F64)
    t = torch.linspace(0.5, 2.0, 5, dtype=F64)
    # E(x, t) = ½‖x‖²/t with a (B, 1) output: s = −x/t.
    timed = EnergyScore(lambda y, t: (0.5 * y.square().sum(1) / t)[:, None])
    torch.testing.assert_close(timed(x, t), -x / t[:, None])
    torch.testing.assert_close(timed(x, 2.0), -x / 2.0)
    torch.testing.assert_close(timed.energy(x, t), 0.5 * x.square().sum(1) / t)
    untimed = EnergyScore(lambda y: 0.5 * y.square().sum(1))  # one argument only
    torch.testing.assert_close(untimed(x), -x)


def test_quadratic_energy_score_jacobian_and_ism():
    q = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 1.5]], dtype=F64)
    model = EnergyScore(lambda y: 0.5 * torch.einsum("bi,ij,bj->b", y, q, y))
    x = torch.randn(8, 3, generator=gen(2), dtype=F64)
    torch.testing.assert_close(model(x), -x @ q)
    # Composes with torch.func: the per-sample Jacobian of s is −Hessian(E) = −Q.
    jac = vmap(jacrev(lambda xi: model(xi[None])[0]))(x)
    torch.testing.assert_close(jac, -q.expand(8, 3, 3))
    # ISM: tr ∇s = −tr Q exactly.
    expected = -torch.trace(q) + 0.5 * (x @ q).square().sum(1)
    for mode in ("batch", "samples"):
        torch.testing.assert_close(ism(model, x, reduction="none", vectorize=mode), expected)
    # SSM: vᵀ∇s v = −vᵀQv for the directions the same seed draws.
    v = projections(2, x, "gaussian", generator=gen(7))
    s = -x @ q
    expected = (-torch.einsum("mbi,ij,mbj->mb", v, q, v) + 0.5 * (v * s).sum(-1).square()).mean(0)
    got = ssm(model, x, n_projections=2, generator=gen(7), reduction="none")
    torch.testing.assert_close(got, expected)


def test_parameter_gradients_match_plain_autograd_to_third_order():
    net = energy_mlp(seed=3)
    model = EnergyScore(net)
    params = list(net.parameters())[:-1]  # the last bias shifts E only: no effect on the score
    x = torch.randn(10, 3, generator=gen(3), dtype=F64)

    def reference_ism():
        # s = −∇E and its exact trace by double backward, all with create_graph.
        xx = x.clone().requires_grad_(True)
        (grad_e,) = torch.autograd.grad(net(xx).sum(), xx, create_graph=True)
        s = -grad_e
        tr = sum(
            torch.autograd.grad(s[:, i].sum(), xx, create_graph=True)[0][:, i] for i in range(3)
        )
        return (tr + 0.5 * s.square().sum(1)).mean()

    got = torch.autograd.grad(ism(model, x), params)
    want = torch.autograd.grad(reference_ism(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    # First order too: d/dθ of ½‖s‖² through the score.
    got = torch.autograd.grad(model(x).square().sum(), params)
    xx = x.clone().requires_grad_(True)
    s = -torch.autograd.grad(net(xx).sum(), xx, create_graph=True)[0]
    want = torch.autograd.grad(s.square().sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    # SSM trains it as well (one more order through the vector-Jacobian product).
    loss = ssm(model, x, n_projections=3, generator=gen(4))
    grads = torch.autograd.grad(loss, params)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_is_a_module_and_works_without_grad_and_in_inference_mode():
    net = energy_mlp(seed=5)
    model = EnergyScore(net)
    assert list(model.parameters()) == list(net.parameters())
    x = torch.randn(4, 3, generator=gen(5), dtype=F64)
    expected = model(x).detach()
    with torch.no_grad():
        out = model(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, expected)
    with torch.inference_mode():
        out = model(torch.randn(4, 3, generator=gen(5), dtype=F64))
    torch.testing.assert_close(out, expected)
    # float32 follows the input.
    assert EnergyScore(energy_mlp(seed=5).float())(x.float()).dtype == torch.float32


def test_image_shaped_input():
    x = torch.randn(3, 2, 4, 4, generator=gen(6), dtype=F64)
    model = EnergyScore(lambda y: 0.5 * y.square().sum((1, 2, 3)))
    torch.testing.assert_close(model(x), -x)


def test_bad_energies_raise_value_error():
    x = torch.randn(4, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"energies of shape \(4,\) or \(4, 1\), got \(4, 3\)"):
        EnergyScore(lambda y: y)(x)
    with pytest.raises(ValueError, match=r"got \(\)"):
        EnergyScore(lambda y: y.sum())(x)
    with pytest.raises(ValueError, match="callable"):
        EnergyScore(3.0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        EnergyScore(lambda y: y.sum(-1))(torch.zeros(3, dtype=F64))
