"""NCSN, continuous-time (score SDE) and EDM losses against the exact mixture oracle (float64).

The central check: with common random numbers, loss(s* + δh) − loss(s*) per sample equals the
analytic explicit-score-matching gap λ·½‖δh‖² plus a cross term λ δh·(s* + ε/σ) whose mean is zero
exactly when s* is the perturbed score, i.e. when s* minimises the loss.  Both signs of δ are tried,
so a model that is not the minimiser (a non-zero cross term, linear in δ) fails one of them.  The
MC tolerance is 4 standard errors of the per-sample residual; the tests also require the gap itself
to exceed 8 standard errors, so they can see a wrong minimiser.
"""

from __future__ import annotations

import math

import pytest
import torch
from _shared import mixture

from scorematch.objectives import dsm
from scorematch.objectives.noise_conditional import (
    _importance_density,
    _importance_table,
    diffusion,
    edm,
    ncsn,
)
from scorematch.parametrization import EDMPrecond, at_time
from scorematch.processes import EDM, VE, VP, NoiseLevels, SubVP

F64 = torch.float64
N = 10000
PROCESSES = {"VE": VE(), "VP": VP(), "SubVP": SubVP(), "EDM": EDM()}
W = torch.tensor([[1.3, -0.4], [0.7, 0.9]], dtype=F64)


def data(n: int = N, seed: int = 0):
    return mixture().sample(n, generator=torch.Generator().manual_seed(seed))


def h(x):
    """A smooth, bounded perturbation direction."""
    return torch.sin(x @ W + 0.3)


class Perturbed:
    """s*(x, t) + δ h(x)/σ_t; records what it was called with."""

    def __init__(self, base, process, delta):
        self.base, self.process, self.delta = base, process, delta

    def __call__(self, x, t):
        self.x, self.t = x, t
        sigma = t if self.process is None else self.process.marginal(t)[1]
        return self.base(x, t) + self.delta * h(x) / sigma[:, None]


def ncsn_exact(x, sigma):
    """Exact score of each level's perturbed law, computed level by level with ``perturbed(1, σ)``."""
    out = torch.empty_like(x)
    for level in sigma.unique():
        m = sigma == level
        out[m] = mixture().perturbed(1.0, float(level)).score(x[m])
    return out


def check_gap(loss0, loss1, analytic):
    diff = loss1 - loss0
    resid = diff - analytic
    se = resid.std() / math.sqrt(resid.numel())
    assert abs(float(resid.mean())) < 4 * se, (float(diff.mean()), float(analytic.mean()), se)
    assert float(analytic.mean()) > 8 * se, "gap too small to test the minimiser"


def seeded(seed=7):
    return torch.Generator().manual_seed(seed)


# -- minimisers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("delta", [1.5, -1.5])
def test_ncsn_minimiser_is_perturbed_score(delta):
    x, ens = data(), NoiseLevels.geometric(0.05, 5.0, 6)
    loss0 = ncsn(ncsn_exact, ens, x, generator=seeded(), reduction="none")
    model = Perturbed(ncsn_exact, None, delta)
    loss1 = ncsn(model, ens, x, generator=seeded(), reduction="none")
    assert set(model.t.tolist()) <= set(ens.sigmas.tolist())
    # λ(σ) ½‖δh/σ‖² with λ = σ²
    check_gap(loss0, loss1, 0.5 * delta**2 * h(model.x).square().sum(1))


def diffusion_weight(process, t, weighting):
    """λ(t)/σ_t²: the factor multiplying ½‖σ_t·(score error)‖²."""
    sigma = process.marginal(t)[1]
    if weighting == "sigma2":
        return torch.ones_like(t)
    w = process.diffusion(t) ** 2 / sigma**2
    if weighting == "importance":
        w = w / (_importance_density(process, t) * (process.t_max - process.t_min))
    return w


@pytest.mark.parametrize("weighting", ["sigma2", "likelihood", "importance"])
@pytest.mark.parametrize("name", list(PROCESSES))
def test_diffusion_minimiser_is_perturbed_score(name, weighting):
    process, x = PROCESSES[name], data()
    exact = mixture().score_model(process)
    loss0 = diffusion(exact, process, x, weighting=weighting, generator=seeded(), reduction="none")
    for delta in (1.5, -1.5):
        model = Perturbed(exact, process, delta)
        loss1 = diffusion(
            model, process, x, weighting=weighting, generator=seeded(), reduction="none"
        )
        w = diffusion_weight(process, model.t, weighting)
        check_gap(loss0, loss1, w * 0.5 * delta**2 * h(model.x).square().sum(1))


@pytest.mark.parametrize("name", ["EDM", "VP", "VE"])
def test_edm_minimiser_is_perturbed_score(name):
    process, x = PROCESSES[name], data()
    exact = mixture().score_model(process)
    loss0 = edm(exact, process, x, generator=seeded(), reduction="none")
    for delta in (1.5, -1.5):
        model = Perturbed(exact, process, delta)
        loss1 = edm(model, process, x, generator=seeded(), reduction="none")
        alpha, sigma = process.marginal(model.t)
        sh = sigma / alpha
        lam = (sh**2 + 0.5**2) / (sh * 0.5) ** 2
        # λ‖ΔD‖², ΔD = σ̂² α · δh/σ_t = σ̂ δh
        check_gap(loss0, loss1, lam * sh**2 * delta**2 * h(model.x).square().sum(1))


def test_gap_check_rejects_a_non_minimiser():
    """Power of the check above: 0.9 × the exact score is not the minimiser, and is caught."""
    process, x = VP(), data()
    exact = mixture().score_model(process)
    wrong = lambda z, t: 0.9 * exact(z, t)  # noqa: E731
    loss0 = diffusion(wrong, process, x, generator=seeded(), reduction="none")
    model = Perturbed(wrong, process, -1.5)
    loss1 = diffusion(model, process, x, generator=seeded(), reduction="none")
    with pytest.raises(AssertionError):
        check_gap(loss0, loss1, 0.5 * 1.5**2 * h(model.x).square().sum(1))


# -- weightings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["VP", "SubVP"])
def test_importance_and_likelihood_have_the_same_expectation(name):
    """Not run on EDM: there uniform t with weight g² = 2t has a heavy right tail near t_min (the
    loss grows like 1/t), so its sample SE is unreliable — the reason importance sampling exists.
    EDM's importance sampler is checked against the closed form below instead."""
    process, x = PROCESSES[name], data(2 * N)
    exact = mixture().score_model(process)

    def model(z, t):  # a fixed, imperfect model
        return 0.8 * exact(z, t) + 0.3 * h(z) / process.marginal(t)[1][:, None]

    lik = diffusion(
        model, process, x, weighting="likelihood", generator=seeded(1), reduction="none"
    )
    imp = diffusion(
        model, process, x, weighting="importance", generator=seeded(2), reduction="none"
    )
    se = math.sqrt(lik.var() / lik.numel() + imp.var() / imp.numel())
    assert abs(float(lik.mean() - imp.mean())) < 4 * se
    assert imp.var() < lik.var()  # the point of importance sampling


def test_importance_is_likelihood_on_ve():
    """On VE g²/σ² is constant, so q is uniform and both weightings draw the same t: equal per sample."""
    process, x = VE(), data(500)
    exact = mixture().score_model(process)
    lik = diffusion(exact, process, x, weighting="likelihood", generator=seeded(), reduction="none")
    imp = diffusion(exact, process, x, weighting="importance", generator=seeded(), reduction="none")
    torch.testing.assert_close(imp, lik, rtol=1e-9, atol=0)


def test_importance_density_matches_edm_closed_form():
    """EDM: g²/σ² = 2/t, so q(t) = 1/(t log(T/t₀)) and P(t ≤ s) = log(s/t₀)/log(T/t₀)."""
    process = EDM()
    t0, t1 = process.t_min, process.t_max
    nodes, cdf, dens = _importance_table(process, torch.device("cpu"))
    assert cdf[0] == 0 and abs(float(cdf[-1]) - 1) < 1e-12
    mid = 0.5 * (nodes[1:] + nodes[:-1])
    torch.testing.assert_close(dens, 1 / (mid * math.log(t1 / t0)), rtol=1e-5, atol=0)
    # The sampler's draws follow the CDF (Kolmogorov–Smirnov at the 1% level).
    model = Perturbed(mixture().score_model(process), process, 0.0)
    diffusion(model, process, data(), weighting="importance", generator=seeded())
    t = model.t.sort().values
    assert t.min() >= t0 and t.max() <= t1
    ecdf = torch.arange(1, N + 1, dtype=F64) / N
    ks = (ecdf - torch.log(t / t0) / math.log(t1 / t0)).abs().max()
    assert ks < 1.63 / math.sqrt(N)


# -- exact identities at fixed noise ----------------------------------------------------------------
def test_ncsn_equals_weighted_dsm_at_fixed_levels():
    x = data(50)
    g = seeded()
    eps = torch.randn(x.shape, generator=g, dtype=F64)
    sigma = torch.tensor([0.1, 1.0, 3.0], dtype=F64)[torch.arange(50) % 3]
    model = lambda z, s: 0.9 * ncsn_exact(z, s) + h(z)  # noqa: E731
    got = ncsn(model, [3.0, 1.0, 0.1], x, sigma=sigma, noise=eps, reduction="none")
    x_tilde = x + sigma[:, None] * eps
    target = (x - x_tilde) / sigma[:, None] ** 2
    want = sigma**2 * 0.5 * (model(x_tilde, sigma) - target).square().sum(1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_diffusion_at_fixed_t_is_weighted_dsm(name):
    process, x = PROCESSES[name], data(50)
    eps = torch.randn(x.shape, generator=seeded(), dtype=F64)
    exact = mixture().score_model(process)
    model = lambda z, t: 0.9 * exact(z, t) + h(z)  # noqa: E731
    t = 0.3 * process.t_min + 0.7 * process.t_max
    alpha, sigma = (v.item() for v in process.marginal(torch.tensor(t, dtype=F64)))
    x_t = alpha * x + sigma * eps
    dsm = 0.5 * (model(x_t, t) + (x_t - alpha * x) / sigma**2).square().sum(1)
    g2 = process.diffusion(torch.tensor(t, dtype=F64)).item() ** 2
    q = _importance_density(process, torch.tensor([t], dtype=F64)).item()
    weights = {
        "sigma2": sigma**2,
        "likelihood": g2,
        "importance": g2 / (q * (process.t_max - process.t_min)),
    }
    for weighting, lam in weights.items():
        got = diffusion(model, process, x, weighting=weighting, t=t, noise=eps, reduction="none")
        torch.testing.assert_close(got, lam * dsm, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["VE", "VP"])
def test_sigma2_and_ncsn_are_sigma2_times_dsm_of_the_bound_model(name):
    """Against objectives.dsm through at_time: the same loss with σ² weights, per-sample times."""
    process, x = PROCESSES[name], data(50)
    eps = torch.randn(x.shape, generator=seeded(), dtype=F64)
    exact = mixture().score_model(process)
    model = lambda z, t: 0.9 * exact(z, t) + h(z)  # noqa: E731
    t = torch.linspace(process.t_min, process.t_max, 50, dtype=F64)
    alpha, sigma = process.marginal(t)
    got = diffusion(model, process, x, t=t, noise=eps, reduction="none")
    # dsm(score_fn, x', σ) draws x̃ = x' + σε; with x' = α x it is the kernel of x_t given x.
    want = sigma**2 * dsm(at_time(model, t), alpha[:, None] * x, sigma, noise=eps, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    levels = torch.tensor([3.0, 1.0, 0.1], dtype=F64)[torch.arange(50) % 3]
    got = ncsn(model, [3.0, 1.0, 0.1], x, sigma=levels, noise=eps, reduction="none")
    want = levels**2 * dsm(at_time(model, levels), x, levels, noise=eps, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["EDM", "VP", "SubVP"])
def test_edm_at_fixed_sigma_is_weighted_denoiser_error(name):
    process, x = PROCESSES[name], data(50)
    eps = torch.randn(x.shape, generator=seeded(), dtype=F64)
    exact = mixture().score_model(process)
    model = lambda z, t: 0.9 * exact(z, t) + h(z)  # noqa: E731
    sh, sd = 0.4, 0.5
    t = process.t_of_log_snr(torch.tensor(-2 * math.log(sh), dtype=F64))
    alpha = process.marginal(t)[0].item()
    x_t = alpha * (x + sh * eps)
    d = (x_t + (alpha * sh) ** 2 * model(x_t, t.expand(50))) / alpha  # Tweedie
    want = (sh**2 + sd**2) / (sh * sd) ** 2 * (d - x).square().sum(1)
    got = edm(model, process, x, sigma=sh, noise=eps, sigma_data=sd, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_edm_clamps_levels_to_the_process_range():
    process, x = EDM(), data(4)
    eps = torch.randn(x.shape, generator=seeded(), dtype=F64)
    model = Perturbed(mixture().score_model(process), process, 0.0)
    got = edm(model, process, x, sigma=torch.tensor([1e-5, 0.3, 80.0, 1e4], dtype=F64), noise=eps,
              reduction="none")  # fmt: skip
    sh = torch.tensor([0.002, 0.3, 80.0, 80.0], dtype=F64)
    torch.testing.assert_close(model.t, sh, rtol=1e-14, atol=0)
    d = model.base.denoise(x + sh[:, None] * eps, sh)
    want = (sh**2 + 0.25) / (sh * 0.5) ** 2 * (d - x).square().sum(1)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_edm_loss_of_untrained_precond_is_one_per_dimension():
    """Karras et al.'s design: F ≡ 0 on data ~ N(0, σ_d² I) gives E[loss | σ̂] = D for every σ̂."""
    g = seeded(3)
    x = 0.5 * torch.randn(N, 3, 2, generator=g, dtype=F64)  # event shape (3, 2), D = 6
    model = EDMPrecond(lambda z, c: torch.zeros_like(z), EDM())
    loss = edm(model, EDM(), x, generator=g, reduction="none")
    assert abs(float(loss.mean()) - 6.0) < 4 * float(loss.std()) / math.sqrt(N)


# -- plumbing -------------------------------------------------------------------------------------
def all_losses(x, generator):
    vp, ens = VP(), NoiseLevels.geometric()
    model = lambda z, t: -z  # noqa: E731
    return [
        ncsn(model, ens, x, generator=generator, reduction="none"),
        *(
            diffusion(model, vp, x, weighting=w, generator=generator, reduction="none")
            for w in ("sigma2", "likelihood", "importance")
        ),
        edm(model, vp, x, generator=generator, reduction="none"),
    ]


def test_same_seed_same_loss_and_reductions():
    x = data(64)
    a, b, c = (all_losses(x, seeded(s)) for s in (5, 5, 6))
    for la, lb, lc in zip(a, b, c):
        assert la.shape == (64,) and torch.equal(la, lb) and not torch.equal(la, lc)
    vp = VP()
    model = lambda z, t: -z  # noqa: E731
    per = diffusion(model, vp, x, generator=seeded())
    assert per.ndim == 0
    torch.testing.assert_close(
        per, diffusion(model, vp, x, generator=seeded(), reduction="none").mean()
    )
    total = edm(model, vp, x, generator=seeded(), reduction="sum")
    torch.testing.assert_close(total, edm(model, vp, x, generator=seeded(), reduction="none").sum())


def test_float32_and_time_dtype():
    x = data(32).float()
    for loss in all_losses(x, seeded()):
        assert loss.dtype == torch.float32 and bool(torch.isfinite(loss).all())
    seen = {}

    def spy(z, t):
        seen["t"] = t
        return -z

    for fn in (lambda: ncsn(spy, [1.0, 0.1], x), lambda: diffusion(spy, VP(), x),
               lambda: diffusion(spy, VP(), x, weighting="importance"), lambda: edm(spy, VP(), x)):  # fmt: skip
        fn()
        assert seen["t"].dtype == torch.float32 and seen["t"].shape == (32,)


def test_validation():
    x, vp = data(8), VP()
    model = lambda z, t: -z  # noqa: E731
    bad_x = x.clone()
    bad_x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        diffusion(model, vp, bad_x)
    with pytest.raises(ValueError, match="shape"):
        ncsn(model, [1.0], x[:, 0])
    with pytest.raises(ValueError, match="weighting"):
        diffusion(model, vp, x, weighting="uniform")
    with pytest.raises(ValueError, match="sigmas"):
        ncsn(model, [], x)
    with pytest.raises(ValueError, match="sigmas"):
        ncsn(model, torch.tensor([1.0, -1.0]), x)
    with pytest.raises(ValueError, match="NoiseLevels"):
        ncsn(model, vp, x)
    with pytest.raises(ValueError, match="score of x's shape"):
        edm(lambda z, t: z[:, :1], vp, x)
    with pytest.raises(ValueError, match="noise"):
        diffusion(model, vp, x, noise=torch.zeros(8, 3, dtype=F64))
    with pytest.raises(ValueError, match="t must"):
        diffusion(model, vp, x, t=torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="t must lie"):
        diffusion(model, vp, x, t=2.0, weighting="importance")
    with pytest.raises(ValueError, match="sigma must"):
        ncsn(model, [1.0], x, sigma=-1.0)
    with pytest.raises(ValueError, match="P_std"):
        edm(model, vp, x, P_std=0.0)
    with pytest.raises(ValueError, match="reduction"):
        edm(model, vp, x, reduction="max")
    with pytest.raises(ValueError, match="Process"):
        diffusion(model, "vp", x)
    with pytest.raises(ValueError, match="empty time range"):
        diffusion(model, NoiseLevels([0.5]), x)
