"""ScoreEnsemble and its ISM-fitted weights against exact answers (float64).

The held-out ISM of Σ wⱼ sⱼ is the quadratic ½wᵀGw + wᵀb exactly (not approximately), so the
identity is checked to 1e-12 relative; the constrained minimisers are checked against brute-force
grids and against the analytic optimum of a Gaussian, whose blurred scores are linear in x.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from _shared import mixture

import scorematch as sm
from scorematch.ensemble import solve_weights
from scorematch.objectives import diffusion, dsm, ism, ssm

F64 = torch.float64


def nets(k: int = 3, dim: int = 2) -> list[torch.nn.Module]:
    """k small unconditional networks with non-zero output layers (distinct, smooth fields)."""
    out = []
    for j in range(k):
        m = sm.MLPScore(dim, width=32, depth=1, time_embed_dim=0, seed=j).to(F64)
        torch.manual_seed(100 + j)
        torch.nn.init.normal_(m.net.out.weight, std=0.5)
        out.append(m)
    return out


def data(n: int = 400, seed: int = 0) -> torch.Tensor:
    return mixture().sample(n, generator=torch.Generator().manual_seed(seed))


def quadratic(w, gram, lin) -> float:
    return float(0.5 * w @ gram @ w + w @ lin)


def test_quadratic_identity_equals_direct_ism():
    x = data()
    members = [*nets(), mixture().score]
    gram, lin = sm.ScoreEnsemble.ism_quadratic(members, x, batch_size=128)
    for w in ([0.25, 0.25, 0.25, 0.25], [0.7, -0.4, 0.2, 0.5], [2.0, 0.0, -3.0, 1.5]):
        ens = sm.ScoreEnsemble(members, w)
        direct = float(ism(ens, x).detach())
        assert quadratic(torch.tensor(w, dtype=F64), gram, lin) == pytest.approx(direct, rel=1e-12)


def test_hutchinson_quadratic_is_ssm_vr_with_the_same_probes():
    x = data(300)
    members = nets()
    w = torch.tensor([0.5, -0.2, 0.7], dtype=F64)
    gram, lin = sm.ScoreEnsemble.ism_quadratic(
        members, x, divergence="hutchinson", probes=3, generator=torch.Generator().manual_seed(5)
    )
    direct = ssm(
        sm.ScoreEnsemble(members, w), x, n_projections=3, projection="rademacher",
        variance_reduced=True, generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    assert quadratic(w, gram, lin) == pytest.approx(float(direct.detach()), rel=1e-12)


def test_hutchinson_is_deterministic_given_the_generator():
    x, members = data(200), nets()

    def fitted(seed):
        g = torch.Generator().manual_seed(seed)
        return sm.ScoreEnsemble.fit(members, x, divergence="hutchinson", probes=2, generator=g)

    a, b, c = fitted(1), fitted(1), fitted(2)
    assert torch.equal(a.ensemble.weights, b.ensemble.weights) and a.loss == b.loss
    assert not torch.equal(a.ensemble.weights, c.ensemble.weights)


def random_problem(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, k + 2, generator=g, dtype=F64)
    return a @ a.T / (k + 2), torch.randn(k, generator=g, dtype=F64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_affine_minimiser_beats_a_brute_force_grid(seed):
    gram, lin = random_problem(3, seed)
    w = solve_weights(gram, lin, "affine", ridge=0.0)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    best = quadratic(w, gram, lin)
    grid = torch.linspace(-6, 6, 601, dtype=F64)
    w1, w2 = torch.meshgrid(grid, grid, indexing="ij")
    cand = torch.stack([w1, w2, 1 - w1 - w2], -1).reshape(-1, 3)
    values = 0.5 * torch.einsum("ni,ij,nj->n", cand, gram, cand) + cand @ lin
    assert best <= float(values.min()) + 1e-12
    assert float(values.min()) - best < 1e-2  # the grid (step 0.02) comes close to it


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_simplex_minimiser_beats_a_brute_force_grid(seed):
    gram, lin = random_problem(4, seed)
    lin = lin * 3  # pushes the optimum to a face of the simplex
    w = solve_weights(gram, lin, "simplex", ridge=0.0)
    assert bool((w >= 0).all()) and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    best = quadratic(w, gram, lin)
    n = 60  # every point of the simplex with coordinates in multiples of 1/60
    cand = torch.tensor(
        [(a / n, b / n, c / n, (n - a - b - c) / n)
         for a, b, c in itertools.product(range(n + 1), repeat=3) if a + b + c <= n],
        dtype=F64,
    )  # fmt: skip
    values = 0.5 * torch.einsum("ni,ij,nj->n", cand, gram, cand) + cand @ lin
    assert best <= float(values.min()) + 1e-12
    assert float(values.min()) - best < 5e-3


def test_simplex_kkt_conditions_hold_at_a_face():
    gram = torch.diag(torch.tensor([1.0, 1.0, 1.0], dtype=F64))
    lin = torch.tensor([0.0, 0.2, 5.0], dtype=F64)  # member 2 is far worse: weight 0
    w = solve_weights(gram, lin, "simplex")
    assert w.tolist() == pytest.approx([0.6, 0.4, 0.0], abs=1e-9)


def gaussian_members(sigmas):
    """Exact scores of N(μ, v I) blurred by each σ, read at clean x: −(x − μ)/(v + σ²)."""
    mean, var = torch.tensor([1.0, -0.5], dtype=F64), 0.5
    law = sm.Gaussian(mean, torch.full((2,), var, dtype=F64))
    return law, [law.perturbed(1.0, s).score for s in sigmas]


def test_affine_extrapolates_to_the_clean_score_and_can_be_negative():
    # Σ wⱼ/(v + σⱼ²) = 1/v with Σ wⱼ = 1 has the exact solution below; ISM on a large sample finds it.
    law, members = gaussian_members([0.3, 0.6])
    x = law.sample(20000, generator=torch.Generator().manual_seed(0))
    v, a, b = 0.5, 0.5 + 0.09, 0.5 + 0.36
    w1 = (1 / v - 1 / b) / (1 / a - 1 / b)
    affine = sm.ScoreEnsemble.fit(members, x, constraint="affine")
    simplex = sm.ScoreEnsemble.fit(members, x, constraint="simplex")
    assert affine.ensemble.weights.tolist() == pytest.approx([w1, 1 - w1], abs=0.03)
    assert float(affine.ensemble.weights[1]) < 0
    assert simplex.ensemble.weights.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert affine.loss < simplex.loss

    def fisher(ens):
        return float(0.5 * (ens(x) - law.score(x)).square().sum(1).mean())

    assert fisher(affine.ensemble) < 1e-3 * fisher(simplex.ensemble)


def test_uniform_default_and_call_forms():
    members = nets(2)
    x = data(50)
    ens = sm.ScoreEnsemble(members)
    assert ens.weights.tolist() == [0.5, 0.5] and len(ens) == 2
    assert torch.allclose(ens(x), 0.5 * (members[0](x) + members[1](x)), rtol=0, atol=1e-14)
    # time-conditional call: every member gets (x, t)
    tc = [sm.MLPScore(2, width=16, depth=1, seed=j).to(F64) for j in range(2)]
    for m in tc:
        torch.nn.init.normal_(m.net.out.weight, std=0.5)
    ens_t = sm.ScoreEnsemble(tc, [2.0, -1.0])
    t = torch.full((50,), 0.3, dtype=F64)
    assert torch.allclose(ens_t(x, t), 2 * tc[0](x, t) - tc[1](x, t), rtol=0, atol=1e-13)
    assert ens_t.weights.dtype == F64
    assert set(ens_t.state_dict()) >= {"weights", "members.0.net.out.weight"}


def test_time_conditional_ensemble_samples_and_likelihood_are_the_members():
    mix, process = mixture(), sm.VP()
    exact = mix.score_model(process)
    ens = sm.ScoreEnsemble([exact, exact], [1.5, -0.5])  # = exact, but through the ensemble
    a = sm.samplers.euler_maruyama(ens, process, (64, 2), 50, generator=torch.Generator().manual_seed(3))  # fmt: skip
    b = sm.samplers.euler_maruyama(exact, process, (64, 2), 50, generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert a.x.dtype == F64 and torch.allclose(a.x, b.x, rtol=0, atol=1e-10)
    assert a.nfe == b.nfe
    x = mix.sample(16, generator=torch.Generator().manual_seed(4))
    ll = sm.log_likelihood(ens, process, x).log_prob
    assert torch.allclose(ll, sm.log_likelihood(exact, process, x).log_prob, rtol=0, atol=1e-8)
    alpha, sigma = process.marginal(torch.tensor(process.t_min, dtype=F64))
    truth = mix.perturbed(float(alpha), float(sigma)).log_prob(x)
    assert torch.allclose(ll, truth, atol=1e-2)  # the prior only approximates p_{t_max}


def test_time_conditional_fit_at_a_noise_level_prefers_the_exact_score():
    mix, process = mixture(), sm.VE()
    t = 0.4
    alpha, sigma = process.marginal(torch.tensor(t, dtype=F64))
    xt = mix.perturbed(float(alpha), float(sigma)).sample(4000, generator=torch.Generator().manual_seed(0))  # fmt: skip
    exact = mix.score_model(process)
    wrong = sm.Gaussian(torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64) * 9).score_model(
        process
    )
    fit = sm.ScoreEnsemble.fit([exact, wrong], xt, t=t, constraint="simplex")
    assert float(fit.ensemble.weights[0]) > 0.95


def test_objectives_accept_an_ensemble():
    members, x = nets(2), data(64)
    ens = sm.ScoreEnsemble(members, [0.3, 0.7])

    def by_hand(y):
        return 0.3 * members[0](y) + 0.7 * members[1](y)

    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        assert float(dsm(ens, x, 0.1, noise=noise)) == pytest.approx(
            float(dsm(by_hand, x, 0.1, noise=noise)), rel=1e-13
        )
    tc = [sm.MLPScore(2, width=16, depth=1, seed=j).to(F64) for j in range(2)]
    ens_t, process = sm.ScoreEnsemble(tc), sm.VP()
    with torch.no_grad():
        loss = diffusion(ens_t, process, x, t=0.5, noise=noise)
        ref = diffusion(
            lambda y, s: 0.5 * (tc[0](y, s) + tc[1](y, s)), process, x, t=0.5, noise=noise
        )
    assert float(loss) == pytest.approx(float(ref), rel=1e-13)


@pytest.mark.parametrize(
    ("models", "weights", "match"),
    [
        ([], None, "at least one"),
        ([lambda x: x], [0.5, 0.5], "one weight per model"),
        ([lambda x: x, lambda x: x], [1.0, math.nan], "finite"),
        ([lambda x: x, lambda x: x], [[1.0, 0.0]], "1-D"),
        (["not callable"], None, "callable"),
    ],
)
def test_construction_errors(models, weights, match):
    with pytest.raises(ValueError, match=match):
        sm.ScoreEnsemble(models, weights)


def test_fit_errors():
    x = data(20)
    with pytest.raises(ValueError, match="constraint"):
        sm.ScoreEnsemble.fit(nets(2), x, constraint="convex")
    with pytest.raises(ValueError, match="divergence"):
        sm.ScoreEnsemble.fit(nets(2), x, divergence="sliced")
    with pytest.raises(ValueError, match="x's shape"):
        sm.ScoreEnsemble([lambda y: y[:, :1]])(x)
    with pytest.raises(ValueError, match="finite"):
        sm.ScoreEnsemble.fit([lambda y: y * math.inf, lambda y: y], x)
