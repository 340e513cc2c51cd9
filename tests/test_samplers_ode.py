"""Deterministic samplers (probability-flow ODE, EDM Heun, DPM-Solver++) against exact oracles.

Ground truths:
- For a Gaussian target N(μ, Σ = U diag(λ) Uᵀ) the probability-flow ODE map is linear and known:
  along each eigenvector, (x_t − α_t μ) ∝ √(α_t² λ + σ_t²) (the ODE is d log y/dt = ½ d log v_t/dt
  with v_t = α_t² λ + σ_t²).  Comparing with it at N and 2N steps pins each solver's order.
- For a 2-D mixture, the exact score drives the samplers and ``metrics.mixture_error`` compares the
  result with exact samples of the same size.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from _shared import Reshaped as _Reshaped
from _shared import rotated as _rotated

import scorematch as sm
from scorematch.metrics import mixture_error
from scorematch.samplers import api, grids
from scorematch.samplers.dpm_solver import dpm_solver
from scorematch.samplers.heun import heun
from scorematch.samplers.ode import ode

F64 = torch.float64
PROCESSES = ["VE", "VP", "SubVP", "EDM"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- Gaussian target: closed-form ODE map ------------------------------------------------------

MEAN = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=F64)


def _gaussian():
    return sm.Gaussian(MEAN, COV, dtype=F64)


def _exact_map(process, x_T, mean=MEAN, cov=COV):
    """x_{t_min} as the exact PF-ODE image of x_T for the target N(mean, cov)."""
    lam, u = torch.linalg.eigh(cov)
    a_T, s_T = process.marginal(torch.tensor(process.t_max, dtype=F64))
    a_0, s_0 = process.marginal(torch.tensor(process.t_min, dtype=F64))
    ratio = ((a_0**2 * lam + s_0**2) / (a_T**2 * lam + s_T**2)).sqrt()
    return a_0 * mean + (((x_T - a_T * mean) @ u) * ratio) @ u.T


def _prior(process, n=16, d=2, seed=0, dtype=F64):
    return process.prior_sample((n, d), generator=_gen(seed), dtype=dtype)


# (name, run(model, process, x, steps), order, coarse steps N; the error is measured at N and 2N)
# (denoise=False: the exact map is the ODE's own end point at t_min.)
SOLVERS = {
    "ode-euler": (lambda m, p, x, n: ode(m, p, x, n, method="euler", denoise=False), 1, 40),
    "ode-heun": (lambda m, p, x, n: ode(m, p, x, n, method="heun", denoise=False), 2, 20),
    "ode-rk4": (lambda m, p, x, n: ode(m, p, x, n, method="rk4", denoise=False), 4, 10),
    "heun": (lambda m, p, x, n: heun(m, p, x, n, denoise=False), 2, 20),
    "dpm1": (lambda m, p, x, n: dpm_solver(m, p, x, n, order=1, denoise=False), 1, 40),
    "dpm2": (lambda m, p, x, n: dpm_solver(m, p, x, n, order=2, denoise=False), 2, 40),
    # On the uniform log-SNR grid 3M converges faster than h³ on this target; EDM's grid shows h³.
    "dpm3": (
        lambda m, p, x, n: dpm_solver(m, p, x, n, order=3, grid="edm_rho", denoise=False),
        3,
        40,
    ),
}
# UniPC's corrector raises the order by one at no extra model call.
SOLVERS["dpm1-unic"] = (
    lambda m, p, x, n: dpm_solver(m, p, x, n, order=1, corrector=True, denoise=False),
    2,
    40,
)
SOLVERS["dpm2-unic"] = (
    lambda m, p, x, n: dpm_solver(
        m, p, x, n, order=2, corrector=True, grid="edm_rho", denoise=False
    ),
    3,
    40,
)
# Every solver on VP and EDM; the cheap high-order ones on all four processes.
CONVERGENCE_CASES = [
    (p, s)
    for p in PROCESSES
    for s in SOLVERS
    if p in ("VP", "EDM") or s in ("ode-rk4", "heun", "dpm2")
]


@pytest.mark.parametrize(("process_name", "solver"), CONVERGENCE_CASES)
def test_convergence_order_to_exact_gaussian_map(process_name, solver):
    process = sm.make_process(process_name)
    model = _gaussian().score_model(process)
    x_T = _prior(process)
    exact = _exact_map(process, x_T)
    run, order, n = SOLVERS[solver]
    err = [float((run(model, process, x_T, k).x - exact).abs().max()) for k in (n, 2 * n)]
    ratio = err[0] / err[1]
    # Halving every step divides the global error by 2^order; ±25% covers the O(h^{order+1})
    # terms still present at these step counts (measured ratios are within 12% of 2^order).
    expected = 2.0**order
    assert 0.75 * expected < ratio < 1.3 * expected, (err, ratio)
    assert err[1] < 0.1


def test_adaptive_ode_matches_exact_map_and_counts_calls():
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, t):
            calls.append(1)
            return self.inner(x, t)

    for name in ("VP", "EDM"):
        process = sm.make_process(name)
        model = Counting(_gaussian().score_model(process))
        x_T = _prior(process)
        calls.clear()
        out = ode(model, process, x_T, 4, method="adaptive", rtol=1e-7, atol=1e-7, denoise=False)
        assert out.nfe == len(calls) > 10
        # Tolerances 1e-7 on a smooth linear ODE: the endpoint is exact to ~1e-5 absolute
        # (the state starts at |x| ≈ 80 under EDM, so atol dominates there).
        err = float((out.x - _exact_map(process, x_T)).abs().max())
        assert err < 1e-4, err


def test_dpm_solver_order1_is_ddim_is_euler_in_sigma():
    # Under EDM (α = 1, σ = t) DPM-Solver-1's step x' = (σ'/σ) x + (1 − σ'/σ) x̂₀ is exactly Euler's
    # step on dx/dσ = (x − x̂₀)/σ, i.e. the probability-flow ODE's Euler step in t = σ.
    process = sm.EDM()
    model = _gaussian().score_model(process)
    x_T = _prior(process)
    for grid in ("edm_rho", "log_snr"):
        a = dpm_solver(model, process, x_T, 7, order=1, grid=grid).x
        b = ode(model, process, x_T, 7, method="euler", grid=grid).x
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# -- NFE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_nfe_formulas(steps):
    process = sm.VP()
    model = _gaussian().score_model(process)
    x = _prior(process, n=4)
    # Heun on every interval; denoise adds the x̂₀ step (EDM's Euler step to σ = 0)
    assert heun(model, process, x, steps, denoise=False).nfe == 2 * steps
    churned = heun(model, process, x, steps, s_churn=5.0, generator=_gen(1), denoise=False)
    assert churned.nfe == 2 * steps
    assert heun(model, process, x, steps, denoise=True).nfe == 2 * steps + 1
    for order in (1, 2, 3):
        assert dpm_solver(model, process, x, steps, order=order, denoise=False).nfe == steps
    assert dpm_solver(model, process, x, steps, denoise=True).nfe == steps + 1
    for method, per_step in (("euler", 1), ("heun", 2), ("rk4", 4)):
        assert ode(model, process, x, steps, method=method, denoise=False).nfe == per_step * steps
    assert ode(model, process, x, steps, method="rk4", denoise=True).nfe == 4 * steps + 1


# -- 2-D mixture -------------------------------------------------------------------------------


def _mixture():
    means = torch.tensor([[-2.5, 0.0], [2.0, 1.0], [0.0, 3.0], [0.5, -2.5]], dtype=F64)
    covs = torch.stack(
        [_rotated(0.3, 0.6, 0.05), _rotated(-0.8, 0.3, 0.1), _rotated(1.2, 0.5, 0.02),
         _rotated(0.0, 0.08, 0.08)]
    )  # fmt: skip
    return sm.GaussianMixture(means, covs, torch.tensor([0.4, 0.3, 0.2, 0.1]), dtype=F64)


MIXTURE_RUNS = {
    "heun": lambda m, p, x: heun(m, p, x, 40),
    "dpm2": lambda m, p, x: dpm_solver(m, p, x, 40),
    "dpm3": lambda m, p, x: dpm_solver(m, p, x, 25, order=3),
    "ode-rk4": lambda m, p, x: ode(m, p, x, 15),
    "ode-adaptive": lambda m, p, x: ode(m, p, x, 1, method="adaptive", rtol=1e-4, atol=1e-4),
}
# The low-order and stochastic variants on one process each (test time).
EXTRA_RUNS = {
    "VP": {
        "heun-churn": lambda m, p, x: heun(m, p, x, 40, s_churn=10.0, generator=_gen(3)),
        "ode-heun": lambda m, p, x: ode(m, p, x, 40, method="heun"),
    },
    "EDM": {"ode-euler": lambda m, p, x: ode(m, p, x, 200, method="euler")},
}


@pytest.mark.parametrize("process_name", PROCESSES)
def test_samplers_reproduce_mixture(process_name):
    mixture = _mixture()
    process = sm.make_process(process_name)
    model = mixture.score_model(process)
    x_T = _prior(process, n=2000)
    runs = {**MIXTURE_RUNS, **EXTRA_RUNS.get(process_name, {})}
    for name, run in runs.items():
        err = mixture_error(run(model, process, x_T).x, mixture)
        # n = 2000: exact samples average a weight error of 0.015 and their Bures figure varies by
        # ~0.009; the prior draw used here (the same for every deterministic sampler) sits at a
        # weight error of 0.03.  A sampler that misplaces mass or blurs modes exceeds these bounds
        # (e.g. 10-step Heun: weight error 0.01–0.03 but Bures excess > 0.7).
        assert err["nonfinite"] == 0, name
        assert err["weight_error"] < 0.05, (name, err)
        assert err["bures_excess"] < 3 * err["bures_noise"], (name, err)


# -- determinism, shapes, dtypes, callbacks ----------------------------------------------------

ALL = {
    "heun": lambda m, p, x, **k: heun(m, p, x, 6, **k),
    "heun-churn": lambda m, p, x, **k: heun(m, p, x, 6, s_churn=3.0, **k),
    "dpm2": lambda m, p, x, **k: dpm_solver(m, p, x, 6, order=2, grid="log_snr", **k),
    "dpm3": lambda m, p, x, **k: dpm_solver(m, p, x, 6, order=3, grid="log_snr", **k),
    "ode-rk4": lambda m, p, x, **k: ode(m, p, x, 3, **k),
    "ode-adaptive": lambda m, p, x, **k: ode(
        m, p, x, 3, method="adaptive", rtol=1e-4, atol=1e-4, **k
    ),
}


@pytest.mark.parametrize("name", list(ALL))
def test_same_seed_same_samples(name):
    process = sm.VP()
    model = _gaussian().score_model(process)
    run = ALL[name]
    a = run(model, process, (8, 2), generator=_gen(5)).x
    b = run(model, process, (8, 2), generator=_gen(5)).x
    c = run(model, process, (8, 2), generator=_gen(6)).x
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    if name != "heun-churn":  # deterministic map: the same start gives the same output
        x = _prior(process, n=8)
        assert torch.equal(run(model, process, x).x, run(model, process, x.clone()).x)


@pytest.mark.parametrize("name", list(ALL))
def test_image_shaped_events(name):
    process = sm.EDM()
    d = 16
    cov = torch.diag(torch.linspace(0.2, 2.0, d, dtype=F64)) + 0.1
    flat = sm.Gaussian(torch.linspace(-1, 1, d, dtype=F64), cov).score_model(process)
    image = _Reshaped(flat)
    x = _prior(process, n=5, d=d)
    gen = {"generator": _gen(2)} if name == "heun-churn" else {}
    out_flat = ALL[name](flat, process, x, **gen)
    gen = {"generator": _gen(2)} if name == "heun-churn" else {}
    out_image = ALL[name](image, process, x.reshape(5, 1, 4, 4), **gen)
    assert out_image.x.shape == (5, 1, 4, 4)
    assert out_image.nfe == out_flat.nfe
    torch.testing.assert_close(out_image.x.reshape(5, d), out_flat.x, rtol=1e-9, atol=1e-9)
    # a shape draws the start from the prior with the model's dtype
    drawn = ALL[name](image, process, (3, 1, 4, 4), generator=_gen(0))
    assert drawn.x.shape == (3, 1, 4, 4) and drawn.x.dtype == F64


@pytest.mark.parametrize("name", list(ALL))
def test_float32_matches_float64(name):
    process = sm.VP()
    x64 = _prior(process, n=32)
    gen = (lambda: {"generator": _gen(4)}) if name == "heun-churn" else dict
    out64 = ALL[name](_gaussian().score_model(process), process, x64, **gen())
    g32 = sm.Gaussian(MEAN.float(), COV.float())
    out32 = ALL[name](g32.score_model(process), process, x64.float(), **gen())
    assert out32.x.dtype == torch.float32
    if name == "heun-churn":  # float32 and float64 normal draws differ for the same seed
        assert torch.isfinite(out32.x).all()
        return
    # float32 round-off through ≤ 12 model calls; the adaptive solver may also take other steps.
    tol = 1e-3 if name == "ode-adaptive" else 1e-4
    torch.testing.assert_close(out32.x.double(), out64.x, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["heun", "dpm2", "ode-rk4", "ode-adaptive"])
def test_trajectory_and_callback(name):
    process = sm.SubVP()
    model = _gaussian().score_model(process)
    x = _prior(process, n=4)
    seen = []
    out = ALL[name](model, process, x, callback=seen.append, return_trajectory=True, denoise=False)
    steps = len(seen)
    assert [c["i"] for c in seen] == list(range(steps))
    assert len(out.trajectory) == steps + 1
    assert torch.equal(out.trajectory[0], x)
    assert torch.equal(out.trajectory[-1], out.x)
    times = [c["t"] for c in seen]
    assert all(a > b for a, b in itertools.pairwise(times))
    assert times[0] == pytest.approx(process.t_max)
    for c, state in zip(seen, out.trajectory[:-1]):  # each step reports the state it starts from
        assert torch.equal(c["x"], state)
    if name in ("heun", "dpm2"):
        assert all(c["denoised"].shape == x.shape for c in seen)


def test_denoise_returns_tweedie_mean_at_t_min():
    process = sm.VP()
    model = _gaussian().score_model(process)
    x = _prior(process, n=8)
    for run in (
        lambda **k: heun(model, process, x, 8, **k),
        # (lower_order_final lowers the last real steps only when no x̂₀ step follows, and
        # order=None is 2 only when one does)
        lambda **k: dpm_solver(
            model, process, x, 8, grid="log_snr", order=3, lower_order_final=False, **k
        ),
        lambda **k: ode(model, process, x, 4, **k),
    ):
        last = run(denoise=False).x
        t_min = torch.full((8,), process.t_min, dtype=F64)
        torch.testing.assert_close(run(denoise=True).x, model.denoise(last, t_min))


def test_churn_is_clamped_at_the_prior_level():
    # A huge churn at the first step would raise the noise above the prior's; it is clamped, so
    # the sampler stays finite and still reproduces the target's mean.
    process = sm.VP()
    model = _gaussian().score_model(process)
    out = heun(model, process, (4000, 2), 30, s_churn=1e3, generator=_gen(0))
    assert torch.isfinite(out.x).all()
    torch.testing.assert_close(out.x.mean(0), MEAN, atol=0.06, rtol=0)  # 4σ/√n ≈ 0.06


# -- the one-line entry point ------------------------------------------------------------------


def test_sample_by_name():
    process = sm.EDM()
    model = _gaussian().score_model(process)
    out = api.sample(model, process, (6, 2), generator=_gen(0))  # default: heun, 17 steps, x̂₀
    assert out.x.shape == (6, 2) and out.nfe == 2 * api.DEFAULT_STEPS["heun"] + 1 == 35  # EDM's
    direct = heun(model, process, (6, 2), api.DEFAULT_STEPS["heun"], generator=_gen(0))
    assert torch.equal(out.x, direct.x)
    out = api.sample(model, process, (6, 2), sampler="dpm_solver", steps=9, order=3)
    assert out.nfe == 10
    out = api.sample(model, process, (6, 2), sampler="ode", steps=5, method="euler")
    assert out.nfe == 6
    seen = []
    api.sample(model, process, (6, 2), sampler="heun", steps=3, callback=seen.append)
    assert len(seen) == 3


def test_registry_resolves_every_sampler_and_its_default_steps():
    process = sm.EDM(sigma_min=0.01, sigma_max=20.0)
    model = _gaussian().score_model(process)
    assert set(api.SAMPLERS) == set(api.DEFAULT_STEPS)
    for name, function in api.SAMPLERS.items():  # a name -> function table
        sampler = api.get_sampler(name)
        assert sampler is function and sampler.__name__ == name
        assert sampler.__module__.startswith("scorematch.samplers.")
        seen = []
        options = {"langevin_steps": 1, "step_size": 1e-5} if name == "annealed_langevin" else {}
        sampler(model, process, (2, 2), callback=seen.append, generator=_gen(0), **options)
        per_step = 1 if name != "annealed_langevin" else 0  # one callback per level there
        assert len(seen) == api.DEFAULT_STEPS[name] + 1 - per_step, name


def test_sample_does_not_touch_model_state():
    process = sm.VP()
    model = _gaussian().score_model(process).train()
    api.sample(model, process, (2, 2), sampler="dpm_solver", steps=2)
    assert model.training


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_raises_value_error():
    process = sm.VP()
    model = _gaussian().score_model(process)
    x = _prior(process, n=2)
    bad = [
        lambda: api.sample(model, process, x, sampler="nope"),
        lambda: heun(model, process, x, 0),
        lambda: dpm_solver(model, process, x, 2.5),
        lambda: ode(model, process, x, -1),
        lambda: ode(model, process, x, 3, method="rk45"),
        lambda: ode(model, process, x, 3, method="adaptive", solver="nope"),
        lambda: ode(model, process, x, 3, method="adaptive", rtol=0.0),
        lambda: dpm_solver(model, process, x, 3, order=4),
        lambda: dpm_solver(model, process, x, 3, order=0),
        lambda: dpm_solver(model, process, x, 3, grid="nope"),
        lambda: heun(model, process, x, 3, s_churn=-1.0),
        lambda: heun(model, process, x, 3, s_noise=0.0),
        lambda: heun(model, process, x, 3, s_tmin=2.0, s_tmax=1.0),
        lambda: heun(model, process, torch.zeros(3), 3),
        lambda: dpm_solver(model, process, x, 3, grid=torch.tensor([0.9, 0.5])),  # implies 1 ≠ 3
        lambda: heun(model, process, x, 3, grid=torch.tensor([0.9, 0.5, 0.1])),
        lambda: ode(model, process, x, 3, grid=torch.tensor([0.5, 0.9, 0.95, 0.99])),
    ]
    for i, call in enumerate(bad):
        with pytest.raises(ValueError):
            call()
            pytest.fail(f"case {i} did not raise")
    with pytest.raises(ValueError, match="heun"):  # the message lists the choices
        api.get_sampler("Heun")


def test_explicit_grid_tensor_and_callable():
    process = sm.EDM()
    model = _gaussian().score_model(process)
    x = _prior(process, n=4)
    t = grids.edm_rho(process, 6)
    a = dpm_solver(model, process, x, 6, grid=t).x
    b = dpm_solver(model, process, x, 6, grid=lambda p, n: grids.edm_rho(p, n)).x
    c = dpm_solver(model, process, x, 6, grid="edm_rho").x
    assert torch.equal(a, b) and torch.equal(a, c)


# -- few-step DPM-Solver recipe and the jump grid ---------------------------------------------


@pytest.mark.parametrize("name", ["VP", "VE", "EDM"])
def test_log_snr_grid_with_a_jump(name):
    process = sm.make_process(name)
    t = grids.log_snr(process, 6, sigma_jump=2.0)
    alpha, sigma = process.marginal(t)
    lam = (alpha / sigma).log()
    assert t[0] == process.t_max and t[-1] == process.t_min and t.numel() == 7
    assert float(sigma[1] / alpha[1]) == pytest.approx(2.0, rel=1e-9)
    gaps = lam[2:] - lam[1:-1]  # the five steps below the jump are equal in log-SNR
    torch.testing.assert_close(gaps, gaps.mean().expand(5), rtol=1e-8, atol=0)
    assert torch.equal(grids.log_snr(process, 1, sigma_jump=2.0), grids.log_snr(process, 1))
    with pytest.raises(ValueError, match="sigma_jump"):
        grids.log_snr(process, 6, sigma_jump=1e4)
    assert grids.t_of_sigma(process, 2.0) == pytest.approx(float(t[1]), rel=1e-9)


def test_dpm_solver_default_is_its_documented_recipe():
    # with x̂₀: jump to 2·2.5^((N−4)/5) σ_d, log-SNR steps to 0.4 σ_d / N, x̂₀; UniPC-2
    process = sm.EDM(sigma_data=1.0)
    model = _mixture().score_model(process)
    x = _prior(process, n=64, seed=4)
    out = dpm_solver(model, process, x, 9)
    t_end = grids.t_of_sigma(process, 0.4 / 9)
    explicit = dpm_solver(
        model,
        process,
        x,
        9,
        order=2,
        corrector=True,
        grid=lambda p, n: grids.log_snr(p, n, t_min=t_end, sigma_jump=5.0),
        denoise=True,
    )
    assert out.nfe == explicit.nfe == 10
    assert torch.equal(out.x, explicit.x)
    assert sm.samplers.dpm_solver_defaults(process, 9) == ("dpm_recipe", 2, True)
    # the recipe's times are in units of σ_data (EDM: t = σ)
    one, three = (grids.dpm_recipe(sm.EDM(sigma_data=v), 9) for v in (1.0, 3.0))
    torch.testing.assert_close(three[1:], 3 * one[1:], rtol=1e-12, atol=0)
    # past about 24 steps the jump would pass the prior's σ = 80: plain log-SNR steps to the end
    plain = dpm_solver(model, process, x, 25)
    t_end = grids.t_of_sigma(process, 0.4 / 25)
    grid = lambda p, n: grids.log_snr(p, n, t_min=t_end)  # noqa: E731
    assert torch.equal(
        plain.x, dpm_solver(model, process, x, 25, grid=grid, order=2, corrector=True).x
    )
    # without x̂₀: the log-SNR grid over the whole range, 3M, no corrector
    a = dpm_solver(model, process, x, 9, denoise=False).x
    assert torch.equal(
        a, dpm_solver(model, process, x, 9, denoise=False, grid="log_snr", order=3).x
    )
    # the few-step grid of before stays available by name: 80 → 10 σ_d, log-SNR to 0.1 σ_d
    t = grids.few_step(sm.EDM(), 9)
    assert float(t[1]) == pytest.approx(5.0) and float(t[-1]) == pytest.approx(0.05)


def test_dpm_solver_default_follows_the_data_scale():
    # The failure: data of std ≈ 5 sampled with a recipe set for σ_data = 0.5.  With the
    # measured σ_data the recipe is scale-free: the same error as the mixture shrunk to std 0.45
    # (measured, 20 000 samples, 10 NFE: 0.318 with σ_data = 0.5, 0.072 measured; shrunk: 0.075).
    base = _mixture()
    errors = []
    for scale, stated in ((3.0, None), (3.0, "measured"), (0.25, "measured")):
        mix = sm.GaussianMixture(base.means * scale, base.covs * scale**2, base.weights, dtype=F64)
        sigma_data = float(mix.sample(2000, generator=_gen(5)).var(0).mean().sqrt())
        process = sm.EDM() if stated is None else sm.EDM(sigma_data=sigma_data)
        x = dpm_solver(mix.score_model(process), process, (20_000, 2), 9, generator=_gen(0)).x
        errors.append(mixture_error(x, mix, generator=_gen(1))["total"])
    assert errors[1] < 0.4 * errors[0], errors
    assert abs(errors[1] - errors[2]) < 0.02, errors


@pytest.mark.parametrize("name", ["VP", "VE", "EDM"])
def test_dpm_solver_few_step_default_beats_the_plain_grid(name):
    # 20 000 samples, exact score; measured totals at 10 NFE (auto / plain 3M):
    # VP 0.099 / 0.128, VE 0.090 / 0.121, EDM 0.094 / 0.158; exact samples' floor 0.005.
    mixture, process = _mixture(), sm.make_process(name)
    model = mixture.score_model(process)
    errors = [
        mixture_error(
            dpm_solver(model, process, (20_000, 2), 10, generator=_gen(0), **options).x,
            mixture,
            generator=_gen(1),
        )["total"]
        for options in ({}, {"grid": "log_snr"})
    ]
    assert errors[0] < 0.85 * errors[1], errors


def test_dpm_solver_lowers_the_final_order_at_any_step_count():
    # VP's uniform grid ends with a long log-SNR step; 3M extrapolating across it made the error
    # grow (measured at 20 / 50 steps: 0.74 / 0.12 without lowering, 0.078 / 0.0085 with).
    mixture, process = _mixture(), sm.VP()
    model = mixture.score_model(process)
    errors = [
        mixture_error(
            dpm_solver(model, process, (20_000, 2), n, generator=_gen(0), grid="uniform").x,
            mixture,
            generator=_gen(1),
        )["total"]
        for n in (10, 20, 50)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02, errors


# -- EDM's Algorithms 1 and 2, written out independently ---------------------------------------


def _edm_steps(n, sigma_min, sigma_max, rho=7.0):
    """Karras et al. 2022, eq. 5: t_i for i < N, then t_N = 0 (Python floats, float64)."""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)] + [0.0]


def _edm_sampler(denoiser, latents, t_steps, churn=0.0, s_min=0.0, s_max=float("inf"),
                 s_noise=1.0, generator=None):  # fmt: skip
    """EDM's Algorithm 2 (Algorithm 1 when churn = 0), step by step as in the paper."""
    n = len(t_steps) - 1
    x, calls = latents * t_steps[0], 0
    for i in range(n):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        gamma = min(churn / n, 2**0.5 - 1) if s_min <= t_cur <= s_max else 0.0
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = x + (t_hat**2 - t_cur**2) ** 0.5 * s_noise * eps
        d_cur = (x - denoiser(x, t_hat)) / t_hat
        x_next = x + (t_next - t_hat) * d_cur
        calls += 1
        if t_next != 0:  # 2nd-order correction on every step but the one to σ = 0
            d_prime = (x_next - denoiser(x_next, t_next)) / t_next
            x_next = x + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
            calls += 1
        x = x_next
    return x, calls


@pytest.mark.parametrize("churn", [0.0, 40.0])
def test_heun_is_edms_algorithm(churn):
    # heun on EDM's grid without its final 0 (denoise=True adds the x̂₀ step), on the named grid
    # with steps = N − 1, and on the grid with its 0 are EDM's Alg. 1 (churn 0) / Alg. 2, N = 18:
    # 35 model calls.
    mixture = _mixture()
    process = sm.EDM(sigma_min=0.002, sigma_max=80.0)
    model = mixture.score_model(process)

    def denoiser(x, sigma):  # D(x; σ) = x + σ² ∇log p(x; σ), the exact mixture's
        return x + sigma**2 * mixture.perturbed(1.0, sigma).score(x)

    n = 18
    t_steps = _edm_steps(n, 0.002, 80.0)
    latents = torch.randn(256, 2, generator=_gen(7), dtype=F64)
    options = {"s_churn": churn, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}
    ref, calls = _edm_sampler(denoiser, latents, t_steps, churn, 0.05, 50.0, 1.003, _gen(8))
    assert calls == 35
    runs = [
        heun(model, process, latents * 80.0, grid=torch.tensor(t_steps[:-1], dtype=F64),
             generator=_gen(8), **options),
        heun(model, process, latents * 80.0, grid=torch.tensor(t_steps, dtype=F64),
             generator=_gen(8), **options),
        heun(model, process, latents * 80.0, n - 1, generator=_gen(8), **options),
    ]  # fmt: skip
    for out in runs:
        assert out.nfe == 35
        torch.testing.assert_close(out.x, ref, rtol=1e-12, atol=1e-12)
    assert api.DEFAULT_STEPS["heun"] == n - 1  # EDM's CIFAR-10 setting is the default


# -- a grid fitted to the model ----------------------------------------------------------------


def test_tune_grid_fits_the_default_sampler_to_the_model():
    process = sm.EDM(sigma_data=1.0)
    model = _mixture().score_model(process)
    kw = {"n": 64, "max_evaluations": 60, "reference_steps": 100}
    tuned = sm.samplers.tune_grid(model, process, (1, 2), 5, generator=_gen(0), holdout=64, **kw)
    again = sm.samplers.tune_grid(model, process, (1, 2), 5, generator=_gen(0), **kw)
    assert torch.equal(tuned.times, again.times)  # deterministic given the generator
    assert again.holdout_loss is None  # no held-out draws asked for
    # on 64 other draws the tuned grid is better too, and the default's figure is its own
    assert tuned.holdout_loss < 0.7 * tuned.holdout_loss_default
    z = _prior(process, n=64, seed=9)
    ref = dpm_solver(model, process, z, 100, grid="log_snr", order=3).x
    default = dpm_solver(model, process, z, 4).x
    assert float((default - ref).square().mean()) == pytest.approx(
        tuned.holdout_loss_default, rel=0.5
    )  # other draws, same size: the same figure within sampling noise
    assert (
        tuned.loss < 0.7 * tuned.loss_default
    )  # measured 0.0021 against 0.0050 (2-D bench mixture)
    t = tuned.times
    assert t.numel() == 6 and float(t[0]) == process.t_max and float(t[-1]) == 0.0
    assert bool((t[1:] < t[:-1]).all()) and float(t[-2]) >= process.t_min
    # the samplers take it as it is: nfe model calls
    z = _prior(process, n=64, seed=9)
    out = dpm_solver(model, process, z, grid=tuned.times)
    assert out.nfe == tuned.nfe == 5
    # JSON-storable: list of floats, nfe, sampler name
    data = json.loads(json.dumps(tuned.to_dict()))
    assert data["sampler"] == "dpm_solver" and data["nfe"] == 5
    back = sm.samplers.TunedGrid.from_dict(data)
    assert torch.equal(back.times, tuned.times)
    assert (back.holdout_loss, back.loss) == (tuned.holdout_loss, tuned.loss)
    with pytest.raises(ValueError, match="nfe"):
        sm.samplers.tune_grid(model, process, (1, 2), 2)


def test_tune_grid_can_keep_the_recipes_last_time_and_trim_the_farthest_draws():
    process = sm.EDM(sigma_data=1.0)
    model = _mixture().score_model(process)
    kw = {"n": 32, "max_evaluations": 20, "reference_steps": 50, "generator": _gen(0)}
    pinned = sm.samplers.tune_grid(model, process, (1, 2), 5, fit_end=False, **kw)
    recipe = sm.samplers.grids.dpm_recipe(process, 4)
    assert pinned.times.numel() == 6 and float(pinned.times[-1]) == 0.0
    assert float(pinned.times[-2]) == pytest.approx(float(recipe[-1]), rel=1e-12)
    assert pinned.loss <= pinned.loss_default
    kw["generator"] = _gen(0)
    trimmed = sm.samplers.tune_grid(model, process, (1, 2), 5, trim=0.5, **kw)
    kw["generator"] = _gen(0)
    full = sm.samplers.tune_grid(model, process, (1, 2), 5, **kw)
    # the same start, half the draws (the nearer half) in its mean: a smaller figure
    assert trimmed.loss_default < full.loss_default
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"trim must be in \[0, 1\)"):
            sm.samplers.tune_grid(model, process, (1, 2), 5, trim=bad)


def _dpmpp_2m(denoiser, x, sigmas):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) on σ's ending at 0, in t = −log σ, written out:
    first order on the first step and on the step to σ = 0 (x̂₀ itself)."""
    old = None
    for i in range(len(sigmas) - 1):
        d = denoiser(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = d
        else:
            h = math.log(sigmas[i]) - math.log(sigmas[i + 1])
            if old is None:
                x = sigmas[i + 1] / sigmas[i] * x - math.expm1(-h) * d
            else:
                r = (math.log(sigmas[i - 1]) - math.log(sigmas[i])) / h
                x = sigmas[i + 1] / sigmas[i] * x - math.expm1(-h) * (
                    (1 + 1 / (2 * r)) * d - old / (2 * r)
                )
        old = d
    return x


def test_dpm_solver_2m_is_dpmpp_2m_on_a_grid_ending_at_zero():
    mixture = _mixture()
    process = sm.EDM()
    model = mixture.score_model(process)

    def denoiser(x, sigma):
        return x + sigma**2 * mixture.perturbed(1.0, sigma).score(x)

    latents = torch.randn(128, 2, generator=_gen(3), dtype=F64)
    for n in (5, 10, 18):
        sigmas = _edm_steps(n, 0.002, 80.0)
        ref = _dpmpp_2m(denoiser, latents * 80.0, sigmas)
        out = dpm_solver(
            model, process, latents * 80.0, grid=torch.tensor(sigmas, dtype=F64), order=2
        )
        assert out.nfe == n
        torch.testing.assert_close(out.x, ref, rtol=1e-12, atol=1e-12)
