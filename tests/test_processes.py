"""Forward processes against their closed forms, the variance equation and a simulated SDE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import torch

import scorematch as sm
from scorematch import EDM, VE, VP, SubVP, make_process

F64 = torch.float64
PROCESSES = [VE(), VP(), SubVP(), EDM()]
IDS = ["VE", "VP", "SubVP", "EDM"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def times(p, n: int = 101) -> torch.Tensor:
    """Uniform and log-spaced times over [t_min, t_max], float64."""
    lin = torch.linspace(p.t_min, p.t_max, n, dtype=F64)
    log = torch.logspace(math.log10(p.t_min), math.log10(p.t_max), n, dtype=F64)
    return torch.cat([lin, log])


# -- closed forms -------------------------------------------------------------------------------


def test_marginals_match_closed_forms():
    t = torch.tensor([1e-5, 0.01, 0.3, 0.7, 1.0], dtype=F64)
    ve = VE(sigma_min=0.02, sigma_max=30.0)
    a, s = ve.marginal(t)
    torch.testing.assert_close(a, torch.ones_like(t))
    torch.testing.assert_close(s, 0.02 * (30.0 / 0.02) ** t, rtol=1e-13, atol=0)
    torch.testing.assert_close(
        ve.diffusion(t), s * math.sqrt(2 * math.log(1500.0)), rtol=1e-13, atol=0
    )

    vp, svp = VP(beta_min=0.1, beta_max=20.0), SubVP(beta_min=0.1, beta_max=20.0)
    # α = exp(−½∫₀ᵗ β) with the integral done numerically
    integral = np.array([scipy.integrate.quad(lambda u: 0.1 + 19.9 * u, 0, ti)[0] for ti in t])
    alpha = torch.tensor(np.exp(-0.5 * integral))
    beta = 0.1 + 19.9 * t
    a, s = vp.marginal(t)
    torch.testing.assert_close(a, alpha, rtol=1e-12, atol=0)
    torch.testing.assert_close(s, (1 - alpha**2).sqrt(), rtol=1e-9, atol=0)
    torch.testing.assert_close(vp.diffusion(t), beta.sqrt(), rtol=1e-13, atol=0)
    a, s = svp.marginal(t)
    torch.testing.assert_close(a, alpha, rtol=1e-12, atol=0)
    torch.testing.assert_close(s, 1 - alpha**2, rtol=1e-9, atol=0)
    torch.testing.assert_close(svp.diffusion(t), (beta * (1 - alpha**4)).sqrt(), rtol=1e-9, atol=0)

    edm = EDM()
    te = torch.tensor([0.002, 0.5, 80.0], dtype=F64)
    a, s = edm.marginal(te)
    torch.testing.assert_close(a, torch.ones_like(te))
    torch.testing.assert_close(s, te)
    torch.testing.assert_close(edm.diffusion(te), (2 * te).sqrt())


@pytest.mark.parametrize("p", PROCESSES, ids=IDS)
def test_drift_rate_and_variance_equation_by_autograd(p):
    t = times(p).requires_grad_()
    alpha, sigma = p.marginal(t)

    def deriv(y):  # dy/dt elementwise (y is a function of t alone); constant y has none
        if not y.requires_grad:
            return torch.zeros_like(t)
        return torch.autograd.grad(y.sum(), t, retain_graph=True)[0]

    dlog_alpha, dvar = deriv(alpha.log()), deriv(sigma**2)
    t = t.detach()
    f = p.log_alpha_rate(t)
    torch.testing.assert_close(f, dlog_alpha, rtol=1e-12, atol=1e-12)
    # g² = dσ²/dt − 2 f σ²
    g2 = p.diffusion(t) ** 2
    torch.testing.assert_close(g2, dvar - 2 * f * sigma.detach() ** 2, rtol=1e-9, atol=1e-12)
    # drift(x, t) = f(t) x, per-sample t, any event shape; scalar t broadcasts
    x = torch.randn(len(t), 3, 2, generator=gen(0), dtype=F64)
    torch.testing.assert_close(p.drift(x, t), f[:, None, None] * x)
    t0 = float(t[5])
    torch.testing.assert_close(p.drift(x, t0), float(p.log_alpha_rate(t0)) * x)


@pytest.mark.parametrize("p", PROCESSES, ids=IDS)
def test_log_snr_inverse_over_the_range(p):
    t = times(p, 501)
    lam = p.log_snr(t)
    assert (lam[1:101] < lam[:100]).all()  # λ decreases in t
    back = p.t_of_log_snr(lam)
    torch.testing.assert_close(back, t, rtol=1e-10, atol=0)


@pytest.mark.parametrize("p", PROCESSES, ids=IDS)
def test_log_snr_inverse_at_extreme_log_snr(p):
    # DPM-Solver style grids reach far beyond λ(t_min) when t_min is lowered; the inverse must stay
    # exact there (t down to ~1e-26 for VP, ~1e-22 for SubVP at λ = 100).
    lam = torch.tensor([-40.0, -20.0, -5.0, 0.0, 5.0, 20.0, 30.0, 45.0, 60.0, 100.0], dtype=F64)
    t = p.t_of_log_snr(lam)
    back = p.log_snr(t)
    err = (back - lam).abs()
    assert (err < 1e-10 * lam.abs().clamp_min(1)).all(), (
        f"{type(p).__name__}.t_of_log_snr loses precision at large log-SNR: "
        f"λ = {lam.tolist()} → t = {t.tolist()} → λ = {back.tolist()}"
    )


# -- prior --------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", PROCESSES, ids=IDS)
def test_prior(p):
    z = p.prior_sample((4000, 3, 2), generator=gen(1), dtype=F64)
    assert z.shape == (4000, 3, 2) and z.dtype == F64
    assert torch.equal(z, p.prior_sample((4000, 3, 2), generator=gen(1), dtype=F64))
    assert not torch.equal(z, p.prior_sample((4000, 3, 2), generator=gen(2), dtype=F64))
    # std of 24000 normal draws: relative standard error 1/√(2·24000) ≈ 0.0046
    assert abs(float(z.std()) / p.prior_std - 1) < 5 * 0.0046
    assert p.prior_sample((2, 3)).dtype == torch.get_default_dtype()
    normal = torch.distributions.Normal(
        torch.zeros((), dtype=F64), torch.tensor(p.prior_std, dtype=F64)
    )
    torch.testing.assert_close(p.prior_log_prob(z[:50]), normal.log_prob(z[:50]).sum((1, 2)))
    # the prior approximates the marginal at t_max (for a unit-scale x₀)
    alpha, sigma = p.marginal(torch.tensor(p.t_max, dtype=F64))
    assert abs(float(sigma) / p.prior_std - 1) < 1e-2 and float(alpha) < 1.01
    with pytest.raises(ValueError, match="shape"):
        p.prior_sample((5,))


# -- the SDE itself -----------------------------------------------------------------------------


@pytest.mark.parametrize("p", PROCESSES, ids=IDS)
def test_euler_maruyama_reproduces_the_marginal(p):
    # Start from the exact marginal of a point mass x₀ at t_min, integrate dx = f x dt + g dW with
    # Euler–Maruyama on a uniform grid, and compare mean α_t x₀ and std σ_t at the middle and end.
    n, steps, x0 = 10_000, 600, 3.0
    g = gen(3)
    grid = torch.linspace(p.t_min, p.t_max, steps + 1, dtype=F64)
    a0, s0 = p.marginal(grid[0])
    x = a0 * x0 + s0 * torch.randn(n, 1, generator=g, dtype=F64)
    # coefficients at the left end of each step (the scheme); drift(x, t) = f(t) x is checked above
    dt = grid.diff()
    f = p.drift(torch.ones(steps, 1, dtype=F64), grid[:-1])[:, 0]
    noise_scale = p.diffusion(grid[:-1]) * dt.sqrt()
    checks = {}
    for i in range(steps):
        if i % 100 == 0:
            noise = torch.randn(100, n, 1, generator=g, dtype=F64)
        x = x + f[i] * dt[i] * x + noise_scale[i] * noise[i % 100]
        if i + 1 in (steps // 2, steps):
            checks[i + 1] = x.clone()
    for i, xs in checks.items():
        alpha, sigma = (float(v) for v in p.marginal(grid[i]))
        # Monte Carlo: 5 standard errors. Euler's first-order bias at this step size, measured:
        # < 1% of the std (VE: left-point g² under-counts the geometric growth of σ²).
        assert abs(float(xs.mean()) - alpha * x0) < 5 * sigma / math.sqrt(n) + 0.01 * alpha * x0
        assert abs(float(xs.std()) / sigma - 1) < 5 / math.sqrt(2 * n) + 0.01


# -- construction -------------------------------------------------------------------------------


def test_validation():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VE(sigma_min=5.0, sigma_max=5.0)
    with pytest.raises(ValueError, match="sigma_min"):
        VE(sigma_min=-1.0)
    with pytest.raises(ValueError, match="beta_min"):
        VP(beta_min=-0.1)
    with pytest.raises(ValueError, match="beta_max"):
        SubVP(beta_max=-20.0)
    with pytest.raises(ValueError, match="beta_min <= beta_max"):
        VP(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="t_min"):
        VP(t_min=1.0)
    with pytest.raises(ValueError, match="t_min"):
        VE(t_min=0.0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        EDM(sigma_min=100.0)
    with pytest.raises(ValueError, match="sigma_data"):
        EDM(sigma_data=float("nan"))
    with pytest.raises(ValueError, match="unknown process"):
        make_process("ddim")


def test_make_process_and_config_round_trip():
    assert isinstance(make_process("ve"), VE)
    assert isinstance(make_process("Sub-VP", beta_max=10.0), SubVP)
    assert type(make_process("vp")) is VP and isinstance(make_process("EDM"), EDM)
    t = torch.tensor([0.01, 0.5, 0.9], dtype=F64)
    for p in [
        VE(sigma_min=0.05, sigma_max=20.0, t_min=1e-4),
        VP(0.2, 15.0, t_min=1e-2),
        SubVP(beta_max=12.0),
        EDM(sigma_min=0.01, sigma_max=50.0, sigma_data=1.0),
    ]:
        cfg = p.config()
        q = make_process(**cfg)
        assert type(q) is type(p) and q.config() == cfg
        assert (q.t_min, q.t_max) == (p.t_min, p.t_max)
        torch.testing.assert_close(q.marginal(t + p.t_min), p.marginal(t + p.t_min))
        assert repr(q) == repr(p)


def test_every_process_can_state_the_data_scale():
    # σ_data (the data's RMS standard deviation) travels with the process and its config, so a
    # sampler's default recipe (samplers.grids.dpm_recipe) works in the data's own scale.
    for process in (sm.VE(sigma_data=2.0), sm.VP(sigma_data=2.0), sm.SubVP(sigma_data=2.0),
                    sm.EDM(sigma_data=2.0)):  # fmt: skip
        rebuilt = sm.make_process(**process.config())
        assert rebuilt.sigma_data == 2.0 and type(rebuilt) is type(process)
    assert sm.VP().sigma_data is None and "sigma_data" not in sm.VP().config()
    with pytest.raises(ValueError, match="sigma_data"):
        sm.VP(sigma_data=0.0)
    assert sm.VP().default_grid("sde") == "uniform" and sm.EDM().default_grid("sde") == "edm_rho"
    assert sm.NoiseLevels([1.0, 0.1]).default_grid("langevin") == "levels"
    with pytest.raises(ValueError, match="family"):
        sm.VP().default_grid("nope")
