"""Stochastic samplers (Euler–Maruyama, reverse diffusion, ancestral/DDIM, predictor–corrector,
annealed Langevin) against exact oracles.

Ground truths:
- One step from t_max to t_min draws no noise, so it is a closed-form map of the start, written
  here from the papers' formulas (ancestral in the posterior-mean form, not the code's).
- For a 1-D Gaussian target the exact score is affine in x, so every chain (except PC, whose step
  size depends on the batch) is a linear Gaussian recursion x' = A x + B + C z whose output mean and
  variance follow exactly from the start's; 10⁵ samples pin them to ±2 % — far tighter than the
  gap between the discretised chain and the target, so a wrong coefficient or noise level fails.
- For a 2-D mixture the exact score drives each sampler and ``metrics.mixture_error`` compares the
  result with exact samples of the same size.
"""

from __future__ import annotations

import math

import pytest
import torch
from _shared import Reshaped as _Reshaped
from _shared import rotated as _rotated

import scorematch as sm
from scorematch.metrics import mixture_error
from scorematch.processes import NoiseLevels
from scorematch.samplers.langevin import annealed_langevin, langevin_corrector
from scorematch.samplers.sde import (
    ancestral,
    euler_maruyama,
    predictor_corrector,
    reverse_diffusion,
)

F64 = torch.float64
PROCESSES = ["VE", "VP", "SubVP", "EDM"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coef(process, t: float):
    tt = torch.tensor(t, dtype=F64)
    a, s = process.marginal(tt)
    return float(a), float(s), float(process.log_alpha_rate(tt)), float(process.diffusion(tt))


def _sigma_hat_min(process) -> float:
    """The scaled noise level σ/α at t_min (annealed Langevin's smallest default level)."""
    a, s, _, _ = _coef(process, process.t_min)
    return s / a


MEAN = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=F64)


def _gaussian():
    return sm.Gaussian(MEAN, COV, dtype=F64)


# -- one noise-free step: exact formulas -----------------------------------------------------


@pytest.mark.parametrize("process_name", PROCESSES)
def test_single_step_is_the_papers_formula(process_name):
    process = sm.make_process(process_name)
    model = _gaussian().score_model(process)
    x = process.prior_sample((6, 2), generator=_gen(0), dtype=F64)
    t, s = process.t_max, process.t_min
    a_t, sig_t, f_t, g_t = _coef(process, t)
    a_s, sig_s, _, _ = _coef(process, s)
    score = model(x, torch.full((6,), t, dtype=F64))
    a_ts = a_t / a_s
    var_ts = sig_t**2 - a_ts**2 * sig_s**2  # σ²_{t|s}
    x0 = (x + sig_t**2 * score) / a_t  # Tweedie
    expected = {
        # reverse SDE, Euler–Maruyama: x − [f x − g² s] Δt
        "em": x - (f_t * x - g_t**2 * score) * (t - s),
        # reverse of x_t = x_s + (a − 1) x_s + G z
        "rd": x - (a_ts - 1) * x + var_ts * score,
        "rd-euler": x - f_t * x * (t - s) + g_t**2 * (t - s) * score,
        # posterior mean of q(x_s | x_t, x₀): (σ²_{t|s}/σ_t²) α_s x₀ + (σ_s² α_{t|s}/σ_t²) x_t
        "anc": var_ts / sig_t**2 * a_s * x0 + sig_s**2 * a_ts / sig_t**2 * x,
        # DDIM (η = 0): α_s x₀ + σ_s ε̂, ε̂ = (x_t − α_t x₀)/σ_t
        "ddim": a_s * x0 + sig_s * (x - a_t * x0) / sig_t,
    }
    noise_std = {  # the noise each step draws when x̂₀ follows: η g √Δ, G, G, η σ_s G/σ_t
        "em": g_t * math.sqrt(t - s),
        "rd": math.sqrt(var_ts),
        "rd-euler": g_t * math.sqrt(t - s),
        "anc": sig_s * math.sqrt(var_ts) / sig_t,
        "ddim": 0.0,
    }
    runs = {
        "em": lambda **k: euler_maruyama(model, process, x, 1, **k),
        "rd": lambda **k: reverse_diffusion(model, process, x, 1, **k),
        "rd-euler": lambda **k: reverse_diffusion(
            model, process, x, 1, discretization="euler", **k
        ),
        "anc": lambda **k: ancestral(model, process, x, 1, **k),
        "ddim": lambda **k: ancestral(model, process, x, 1, eta=0.0, **k),
    }
    for name, run in runs.items():
        out = run(denoise=False, generator=_gen(1))
        assert out.nfe == 1
        torch.testing.assert_close(out.x, expected[name], rtol=1e-10, atol=1e-10, msg=name)
        # denoise = one more call: Tweedie at t_min, after the step's own noise c·z
        den = run(denoise=True, generator=_gen(1))
        assert den.nfe == 2
        t_min = torch.full((6,), s, dtype=F64)
        noisy = out.x + noise_std[name] * torch.randn(6, 2, generator=_gen(1), dtype=F64)
        torch.testing.assert_close(den.x, model.denoise(noisy, t_min), rtol=1e-10, atol=1e-10)
    # euler discretisation of the reverse-diffusion predictor is Euler–Maruyama, noise included
    a = reverse_diffusion(model, process, (5, 2), 4, discretization="euler", generator=_gen(2))
    b = euler_maruyama(model, process, (5, 2), 4, generator=_gen(2))
    torch.testing.assert_close(a.x, b.x, rtol=1e-10, atol=1e-10)


def test_ancestral_is_ddpm_on_vp_and_smld_on_ve():
    # VP: x_s = (x_t + β s)/√(1−β) with 1 − β = α²_{t|s}; VE: x_s = x_t + (σ_t² − σ_s²) s.
    for process in (sm.VP(), sm.VE()):
        model = _gaussian().score_model(process)
        x = process.prior_sample((4, 2), generator=_gen(0), dtype=F64)
        t, s = process.t_max, process.t_min
        a_t, sig_t, _, _ = _coef(process, t)
        a_s, sig_s, _, _ = _coef(process, s)
        score = model(x, torch.full((4,), t, dtype=F64))
        if isinstance(process, sm.VP):
            beta = 1 - (a_t / a_s) ** 2
            expected = (x + beta * score) / math.sqrt(1 - beta)
        else:
            expected = x + (sig_t**2 - sig_s**2) * score
        out = ancestral(model, process, x, 1, denoise=False)
        torch.testing.assert_close(out.x, expected, rtol=1e-10, atol=1e-10)


# -- linear Gaussian recursions: the exact law of the chain ----------------------------------

M1, V1 = 1.5, 0.25  # 1-D target N(M1, V1)
N_LIN = 100_000


def _affine_score(process, t, target):
    """s(x, t) = −(x − α m)/V_t as (slope, intercept), V_t = α² v + σ², target = (m, v)."""
    a, s, _, _ = _coef(process, t)
    m, v = target
    v_t = a**2 * v + s**2
    return -1.0 / v_t, a * m / v_t


def _push(mean, var, slope_x, slope_s, const, noise_var, process, t, target=(M1, V1)):
    """Law of x' = slope_x·x + slope_s·s(x, t) + const + √noise_var·z for x ~ N(mean, var)."""
    ks, cs = _affine_score(process, t, target)
    lin = slope_x + slope_s * ks
    return lin * mean + slope_s * cs + const, lin**2 * var + noise_var


def _tweedie_law(mean, var, process, t, target):
    a, s, _, _ = _coef(process, t)
    return _push(mean, var, 1 / a, s**2 / a, 0.0, 0.0, process, t, target)


def _chain_law(kind, process, times, eta=1.0, target=(M1, V1)):
    """Exact (mean, var) of the sampler's output (with denoise: noise on every step, then x̂₀) from
    the prior N(0, prior_std²); m and v may be tensors (independent coordinates of a diagonal
    Gaussian)."""
    mean, var = 0.0, process.prior_std**2
    for i in range(len(times) - 1):
        t, s = times[i], times[i + 1]
        a_t, sig_t, f_t, g_t = _coef(process, t)
        a_s, sig_s, _, _ = _coef(process, s)
        a_ts = a_t / a_s
        var_ts = sig_t**2 - a_ts**2 * sig_s**2
        if kind == "em":
            dt = t - s
            step = (1 - f_t * dt, g_t**2 * dt, 0.0, g_t**2 * dt)
        elif kind == "rd":
            step = (2 - a_ts, var_ts, 0.0, var_ts)
        else:  # ancestral/DDIM: α_s x₀ + √(σ_s² − c²) ε̂ + c z, x₀ = (x + σ_t² s)/α_t, ε̂ = −σ_t s
            c2 = eta**2 * sig_s**2 * var_ts / sig_t**2
            keep = math.sqrt(sig_s**2 - c2)
            step = (a_s / a_t, a_s * sig_t**2 / a_t - keep * sig_t, 0.0, c2)
        sx, ss, c, nv = step
        mean, var = _push(mean, var, sx, ss, c, nv, process, t, target)
    return _tweedie_law(mean, var, process, times[-1], target)


def _ald_law(sigmas, steps, eps):
    mean, var = 0.0, sigmas[0] ** 2
    edm = sm.EDM(sigma_min=min(sigmas), sigma_max=max(sigmas))
    for sig in sigmas:
        step = eps * sig**2 / sigmas[-1] ** 2
        for _ in range(steps):
            mean, var = _push(mean, var, 1.0, step / 2, 0.0, step, edm, sig)
    return _push(mean, var, 1.0, sigmas[-1] ** 2, 0.0, 0.0, edm, sigmas[-1])


def _grid(process, steps, name):
    from scorematch.samplers.grids import make_grid

    return make_grid(name, process, steps).tolist()


LINEAR_CASES = {
    "em-VP": ("em", "VP", "uniform", {}),
    "em-EDM": ("em", "EDM", "edm_rho", {}),
    "rd-VE": ("rd", "VE", "uniform", {}),
    "rd-SubVP": ("rd", "SubVP", "uniform", {}),
    "anc-VP": ("anc", "VP", "uniform", {}),
    "anc-VE": ("anc", "VE", "uniform", {}),
    "ddim0.5-EDM": ("anc", "EDM", "edm_rho", {"eta": 0.5}),
}
SAMPLER_FNS = {"em": euler_maruyama, "rd": reverse_diffusion, "anc": ancestral}


@pytest.mark.parametrize("case", list(LINEAR_CASES))
def test_output_law_equals_linear_gaussian_recursion(case):
    kind, pname, grid, opts = LINEAR_CASES[case]
    process = sm.make_process(pname)
    target = sm.Gaussian(torch.tensor([M1], dtype=F64), torch.tensor([V1], dtype=F64))
    model = target.score_model(process)
    steps = 6
    out = SAMPLER_FNS[kind](model, process, (N_LIN, 1), steps, grid=grid, generator=_gen(7), **opts)
    mean, var = _chain_law(kind, process, _grid(process, steps, grid), **opts)
    x = out.x[:, 0]
    # The output is exactly Gaussian: 5 standard errors of the sample mean and variance.
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / N_LIN), (float(x.mean()), mean)
    rel = 5 * math.sqrt(2 / N_LIN)  # 2.2 %
    assert abs(float(x.var()) / var - 1) < rel, (float(x.var()), var)
    # …and 6 coarse steps are far from the target, so the check pins the discretisation.
    assert abs(var / V1 - 1) > 2 * rel or abs(mean - M1) > 10 * math.sqrt(var / N_LIN), (mean, var)


def test_annealed_langevin_law_equals_recursion():
    sigmas, steps, eps = [4.0, 1.0, 0.25], 4, 0.5 * 0.25**2
    process = sm.EDM(sigma_min=0.25, sigma_max=4.0)
    target = sm.Gaussian(torch.tensor([M1], dtype=F64), torch.tensor([V1], dtype=F64))
    out = annealed_langevin(
        target.score_model(process),
        process,
        (N_LIN, 1),
        grid=torch.tensor(sigmas, dtype=F64),  # EDM: t = σ
        langevin_steps=steps,
        step_size=eps,
        generator=_gen(3),
    )
    assert out.nfe == len(sigmas) * steps + 1
    mean, var = _ald_law(sigmas, steps, eps)
    x = out.x[:, 0]
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / N_LIN)
    assert abs(float(x.var()) / var - 1) < 5 * math.sqrt(2 / N_LIN)
    assert abs(var / V1 - 1) > 0.1  # 12 Langevin steps are far from N(M1, V1)


def test_annealed_langevin_on_vp_works_on_the_unit_scale():
    # On VP, Langevin runs on y = x/α_t with score α_t s(α_t y, t): the same chain as on EDM at the
    # same scaled levels, fed the same noise, gives the same output.
    sigmas = [3.0, 1.0, 0.3]
    target = sm.Gaussian(torch.tensor([M1], dtype=F64), torch.tensor([V1], dtype=F64))
    vp, edm = sm.VP(), sm.EDM(sigma_min=0.3, sigma_max=3.0)
    a_max = _coef(vp, vp.t_max)[0]
    y0 = torch.linspace(-3, 3, 11, dtype=F64)[:, None]
    levels = torch.tensor(sigmas, dtype=F64)
    t_vp = vp.t_of_log_snr(-2 * levels.log())  # the VP times whose σ_t/α_t are the levels
    kw = {"langevin_steps": 5, "step_size": 0.01, "generator": _gen(1)}
    out_vp = annealed_langevin(target.score_model(vp), vp, y0 * a_max, grid=t_vp, **kw)
    kw["generator"] = _gen(1)
    out_edm = annealed_langevin(target.score_model(edm), edm, y0, grid=levels, **kw)
    torch.testing.assert_close(out_vp.x, out_edm.x, rtol=1e-9, atol=1e-9)


# -- Langevin corrector ----------------------------------------------------------------------


@pytest.mark.parametrize("norms", ["batch", "sample"])
def test_langevin_corrector_step(norms):
    process = sm.VE()
    model = _gaussian().score_model(process)
    x = torch.randn(7, 2, generator=_gen(0), dtype=F64)
    t = 0.3
    out = langevin_corrector(model, x, t, snr=0.2, alpha=0.9, norms=norms, generator=_gen(5))
    z = torch.randn(7, 2, generator=_gen(5), dtype=F64)
    s = model(x, torch.full((7,), t, dtype=F64))
    zn, sn = z.norm(dim=1), s.norm(dim=1)
    if norms == "batch":
        zn, sn = zn.mean(), sn.mean()
    eps = (2 * 0.9 * (0.2 * zn / sn) ** 2).reshape(-1, 1)
    torch.testing.assert_close(out, x + eps * s + (2 * eps).sqrt() * z, rtol=1e-12, atol=1e-12)


# -- 2-D mixture ------------------------------------------------------------------------------


def _mixture():
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5], [0.5, -2.5]], dtype=F64)
    covs = torch.stack(
        [_rotated(0.3, 0.4, 0.05), _rotated(-0.6, 0.3, 0.08), _rotated(1.2, 0.5, 0.1),
         _rotated(0.0, 0.25, 0.04)]
    )  # fmt: skip
    return sm.GaussianMixture(means, covs, torch.tensor([0.1, 0.2, 0.3, 0.4]), dtype=F64)


N_MIX = 2000
STEPS_MIX = 200
MIXTURE_SAMPLERS = {
    "euler_maruyama": lambda m, p, g, grid: euler_maruyama(
        m, p, (N_MIX, 2), STEPS_MIX, grid=grid, generator=g
    ),
    "reverse_diffusion": lambda m, p, g, grid: reverse_diffusion(
        m, p, (N_MIX, 2), STEPS_MIX, grid=grid, generator=g
    ),
    "ancestral": lambda m, p, g, grid: ancestral(
        m, p, (N_MIX, 2), STEPS_MIX, grid=grid, generator=g
    ),
    # PC: half the predictor steps, one corrector step each — the same 2·100 + 1 NFE budget.
    "predictor_corrector": lambda m, p, g, grid: predictor_corrector(
        m, p, (N_MIX, 2), STEPS_MIX // 2, grid=grid, generator=g
    ),
}


@pytest.mark.parametrize("process_name", PROCESSES)
@pytest.mark.parametrize("sampler", list(MIXTURE_SAMPLERS))
def test_samplers_reproduce_mixture(process_name, sampler):
    mixture = _mixture()
    process = sm.make_process(process_name)
    # EDM's σ = t: a uniform grid in t would spend almost no steps below σ ≈ 1, where modes form.
    grid = "edm_rho" if process_name == "EDM" else "uniform"
    out = MIXTURE_SAMPLERS[sampler](mixture.score_model(process), process, _gen(11), grid)
    err = mixture_error(out.x, mixture)
    # n = 2000: exact samples average a weight error of 0.015 (99th percentile 0.028) and their
    # Bures figure varies by `bures_noise`; 200 first-order steps leave a small bias (measured at
    # n = 20000: per-mode covariance error ≤ 5 %), well inside these bounds.
    assert err["nonfinite"] == 0
    assert err["weight_error"] < 0.05, err
    assert err["bures_excess"] < 3 * err["bures_noise"], err


ALD_SETTINGS = {"levels": 20, "steps": 30, "ratio": 0.5}  # ε = ratio·σ_L², NFE = 20·30 + 1
# (levels geometric in σ: grid="auto", i.e. log-SNR, with levels − 1 intervals)


@pytest.mark.parametrize("process_name", ["EDM", "VE"])
def test_annealed_langevin_reproduces_mixture(process_name):
    mixture = _mixture()
    process = sm.make_process(process_name)
    a, s, _, _ = _coef(process, process.t_min)
    eps = ALD_SETTINGS["ratio"] * (s / a) ** 2
    out = annealed_langevin(
        mixture.score_model(process),
        process,
        (N_MIX, 2),
        ALD_SETTINGS["levels"] - 1,
        langevin_steps=ALD_SETTINGS["steps"],
        step_size=eps,
        generator=_gen(12),
    )
    assert out.nfe == ALD_SETTINGS["levels"] * ALD_SETTINGS["steps"] + 1
    err = mixture_error(out.x, mixture)
    # Unadjusted Langevin at a finite step is biased (measured: weight error 0.02–0.03 at
    # n = 20000, where exact samples give 0.005), so the bounds are looser than for the SDE solvers.
    assert err["nonfinite"] == 0
    assert err["weight_error"] < 0.06, err
    assert err["bures_excess"] < 5 * err["bures_noise"], err


def test_annealed_langevin_default_step_size_is_relative_to_the_last_level():
    # default ε = 0.2 σ_L²: NCSN's 2e-5 at σ_L = 0.01, and a stable step on EDM (σ_L = 0.002)
    for process in (sm.EDM(), sm.VE()):
        model = _gaussian().score_model(process)
        eps = 0.2 * _sigma_hat_min(process) ** 2
        a = annealed_langevin(model, process, (4, 2), 3, generator=_gen(0)).x
        b = annealed_langevin(model, process, (4, 2), 3, step_size=eps, generator=_gen(0)).x
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)  # σ_L computed two ways
    assert 0.2 * _sigma_hat_min(sm.VE()) ** 2 == pytest.approx(2e-5, rel=1e-3)


def test_annealed_langevin_uses_noise_ensemble_levels():
    ens = NoiseLevels.geometric(0.05, 5.0, 4)
    seen = []

    class Recording(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, t):
            seen.append(t)
            return self.inner(x, t)

    model = Recording(_gaussian().score_model(ens))
    out = annealed_langevin(
        model, ens, (3, 2), langevin_steps=2, step_size=0.1 * 0.05**2, generator=_gen(0)
    )
    assert out.nfe == 4 * 2 + 1 == len(seen)
    called = [float(t[0]) for t in seen]
    levels = ens.sigmas.tolist()
    assert called == [levels[0]] * 2 + [levels[1]] * 2 + [levels[2]] * 2 + [levels[3]] * 3
    assert all(t.shape == (3,) for t in seen)


# -- NFE, seeds, shapes, dtypes, callbacks ---------------------------------------------------

ALL = {
    "euler_maruyama": lambda m, p, x, n, **k: euler_maruyama(m, p, x, n, **k),
    "reverse_diffusion": lambda m, p, x, n, **k: reverse_diffusion(m, p, x, n, **k),
    "ancestral": lambda m, p, x, n, **k: ancestral(m, p, x, n, **k),
    "ddim-eta0.3": lambda m, p, x, n, **k: ancestral(m, p, x, n, eta=0.3, **k),
    "pc": lambda m, p, x, n, **k: predictor_corrector(m, p, x, n, **k),
    "pc-em-2": lambda m, p, x, n, **k: predictor_corrector(
        m, p, x, n, predictor="euler_maruyama", corrector_steps=2, **k
    ),
    "pc-ancestral": lambda m, p, x, n, **k: predictor_corrector(
        m, p, x, n, predictor="ancestral", **k
    ),
    "corrector-only": lambda m, p, x, n, **k: predictor_corrector(
        m, p, x, n, predictor="none", **k
    ),
    "ald": lambda m, p, x, n, **k: annealed_langevin(  # 3 levels of n Langevin steps
        m, p, x, 2, langevin_steps=n, step_size=0.1 * _sigma_hat_min(p) ** 2, **k
    ),
}


def _nfe(name, steps, denoise):
    per_step = {"pc": 2, "pc-em-2": 3, "pc-ancestral": 2, "ald": 3}.get(name, 1)
    return per_step * steps + int(denoise)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_nfe_is_exact(steps):
    process = sm.EDM()
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, t):
            calls.append(1)
            return self.inner(x, t)

    model = Counting(_gaussian().score_model(process))
    for name, run in ALL.items():
        for denoise in (True, False):
            calls.clear()
            out = run(model, process, (3, 2), steps, denoise=denoise, generator=_gen(0))
            assert out.nfe == len(calls) == _nfe(name, steps, denoise), (name, denoise)
    out = predictor_corrector(model, process, (3, 2), steps, corrector_steps=0)
    assert out.nfe == steps + 1


@pytest.mark.parametrize("name", list(ALL))
def test_seeds_and_starting_points(name):
    process = sm.VP()
    model = _gaussian().score_model(process)
    run = ALL[name]
    a = run(model, process, (8, 2), 4, generator=_gen(5)).x
    b = run(model, process, (8, 2), 4, generator=_gen(5)).x
    c = run(model, process, (8, 2), 4, generator=_gen(6)).x
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # A shape draws the start from the prior with the same generator: passing that draw as x_init
    # and continuing with the generator gives the same samples.
    g = _gen(5)
    x = process.prior_sample((8, 2), generator=g, dtype=F64)
    torch.testing.assert_close(run(model, process, x, 4, generator=g).x, a, rtol=0, atol=0)
    assert a.dtype == F64  # the model's dtype


@pytest.mark.parametrize("name", list(ALL))
def test_image_shaped_events(name):
    process = sm.VE()
    d = 16
    cov = torch.diag(torch.linspace(0.2, 2.0, d, dtype=F64)) + 0.1
    flat = sm.Gaussian(torch.linspace(-1, 1, d, dtype=F64), cov).score_model(process)
    out_flat = ALL[name](flat, process, (5, d), 3, generator=_gen(2))
    out_image = ALL[name](_Reshaped(flat), process, (5, 1, 4, 4), 3, generator=_gen(2))
    assert out_image.x.shape == (5, 1, 4, 4)
    assert out_image.nfe == out_flat.nfe
    # The same generator gives the same normal numbers whatever the shape; only the per-sample
    # norms of the corrector are shape-dependent, and they are taken over the whole event.
    torch.testing.assert_close(out_image.x.reshape(5, d), out_flat.x, rtol=1e-10, atol=1e-10)


def test_image_shaped_gaussian_law():
    # A diagonal 16-D Gaussian seen as (1, 4, 4) images: each pixel runs its own 1-D linear chain,
    # so the exact law of every pixel is known (10 steps: variances 5–40 % below the target's).
    process = sm.VP()
    d, n, steps = 16, 10_000, 10
    var = torch.linspace(0.2, 2.0, d, dtype=F64)
    mean = torch.linspace(-1, 1, d, dtype=F64)
    model = _Reshaped(sm.Gaussian(mean, var).score_model(process))
    x = ancestral(model, process, (n, 1, 4, 4), steps, generator=_gen(0)).x.reshape(n, d)
    m_exact, v_exact = _chain_law(
        "anc", process, _grid(process, steps, "uniform"), target=(mean, var)
    )
    assert ((x.mean(0) - m_exact).abs() / (v_exact / n).sqrt()).max() < 5
    assert ((x.var(0) / v_exact) - 1).abs().max() < 5 * math.sqrt(2 / n)  # 7 %
    assert ((v_exact / var) - 1).abs().min() > 0.05


@pytest.mark.parametrize("name", list(ALL))
def test_float32(name):
    process = sm.VP()
    g32 = sm.Gaussian(MEAN.float(), COV.float())
    out = ALL[name](g32.score_model(process), process, (2000, 2), 50, generator=_gen(4))
    assert out.x.dtype == torch.float32
    assert torch.isfinite(out.x).all()
    if name in ("ald", "corrector-only"):  # 50 Langevin steps alone do not reach the target
        return
    # the sample mean of 2000 draws of N(MEAN, COV): 5 standard errors ≈ 0.11
    torch.testing.assert_close(out.x.double().mean(0), MEAN, rtol=0, atol=0.12)


def test_float32_matches_float64_without_noise():
    process = sm.VP()
    x = process.prior_sample((16, 2), generator=_gen(0), dtype=F64)
    out64 = ancestral(_gaussian().score_model(process), process, x, 20, eta=0.0)
    g32 = sm.Gaussian(MEAN.float(), COV.float())
    out32 = ancestral(g32.score_model(process), process, x.float(), 20, eta=0.0)
    assert out32.x.dtype == torch.float32
    torch.testing.assert_close(out32.x.double(), out64.x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["euler_maruyama", "ancestral", "pc", "ald"])
def test_trajectory_and_callback(name):
    process = sm.SubVP()
    model = _gaussian().score_model(process)
    x = process.prior_sample((4, 2), generator=_gen(0), dtype=F64)
    seen = []
    out = ALL[name](
        model, process, x, 3, callback=seen.append, return_trajectory=True, generator=_gen(1)
    )
    assert [c["i"] for c in seen] == list(range(len(seen)))
    assert all(set(c) == {"i", "t", "sigma", "x", "denoised"} for c in seen)
    assert all(c["x"].shape == x.shape and c["denoised"].shape == x.shape for c in seen)
    times = [c["t"] for c in seen]
    assert times[0] == pytest.approx(process.t_max)
    assert times == sorted(times, reverse=True)
    if name == "ald":  # a callback per level (3 levels), the state after each level
        assert len(seen) == 3
        assert len(out.trajectory) == 3
        a_last = _coef(process, times[-1])[0]
        final = ALL[name](model, process, x, 3, return_trajectory=True, generator=_gen(1),
                          denoise=False)  # fmt: skip
        torch.testing.assert_close(final.x, a_last * final.trajectory[-1], rtol=0, atol=0)
        return
    assert len(seen) == 3
    assert len(out.trajectory) == 3 + 1  # the states at the grid times
    assert torch.equal(out.trajectory[0], x)
    for c, state in zip(seen, out.trajectory[:-1]):  # each step reports the state it starts from
        assert torch.equal(c["x"], state)
    final = ALL[name](
        model, process, x, 3, return_trajectory=True, generator=_gen(1), denoise=False
    )
    assert torch.equal(final.trajectory[-1], final.x)
    # no trajectory unless asked
    assert ALL[name](model, process, x, 2, generator=_gen(1)).trajectory is None


def test_progress_bar_is_drawn_and_changes_nothing(capsys):
    process = sm.EDM()
    model = _gaussian().score_model(process)
    labels = {"euler_maruyama": "euler_maruyama", "pc": "predictor_corrector",
              "ald": "annealed_langevin"}  # fmt: skip
    for name, label in labels.items():
        shown = ALL[name](model, process, (2, 2), 2, progress=True, generator=_gen(3)).x
        assert f"{label}: 100%" in capsys.readouterr().err  # the bar, named after the sampler
        quiet = ALL[name](model, process, (2, 2), 2, generator=_gen(3)).x
        assert capsys.readouterr().err == ""
        assert torch.equal(shown, quiet)


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_raises_value_error():
    process = sm.VE()
    model = _gaussian().score_model(process)
    x = process.prior_sample((2, 2), generator=_gen(0), dtype=F64)
    nan = x.clone()
    nan[0, 0] = float("nan")
    bad = [
        lambda: euler_maruyama(model, process, x, 0),
        lambda: reverse_diffusion(model, process, x, 2.5),
        lambda: ancestral(model, process, x, -1),
        lambda: predictor_corrector(model, process, x, 0),
        lambda: annealed_langevin(model, process, x, 0),
        lambda: euler_maruyama(model, process, nan, 3),
        lambda: ancestral(model, process, nan, 3),
        lambda: predictor_corrector(model, process, nan, 3),
        lambda: annealed_langevin(model, process, nan, 3),
        lambda: predictor_corrector(model, process, x, 3, predictor="heun"),
        lambda: predictor_corrector(model, process, x, 3, corrector_steps=-1),
        lambda: predictor_corrector(model, process, x, 3, corrector_steps=1.5),
        lambda: predictor_corrector(model, process, x, 3, predictor="none", corrector_steps=0),
        lambda: predictor_corrector(model, process, x, 3, snr=0.0),
        lambda: predictor_corrector(model, process, x, 3, norms="max"),
        lambda: langevin_corrector(model, x, 0.5, snr=-1.0),
        lambda: langevin_corrector(model, x, 0.5, norms="max"),
        lambda: ancestral(model, process, x, 3, eta=1.5),
        lambda: ancestral(model, process, x, 3, eta=-0.1),
        lambda: reverse_diffusion(model, process, x, 3, discretization="heun"),
        lambda: euler_maruyama(model, process, x, 3, grid="nope"),
        lambda: euler_maruyama(model, process, x, 3, grid=torch.tensor([0.9, 0.5])),
        lambda: annealed_langevin(model, process, x, 3, step_size=0.0),
        lambda: annealed_langevin(model, process, x, 3, step_size=1.0),  # ≥ 2σ_L²: diverges
        lambda: annealed_langevin(model, process, x, 3, langevin_steps=0),
        lambda: annealed_langevin(model, process, x, grid=[0.1, 1.0]),
        lambda: annealed_langevin(model, process, x, 3, grid="many"),
        lambda: euler_maruyama(model, process, torch.zeros(3), 3),
        lambda: euler_maruyama(lambda x, t: x[:, :1], process, x, 3),  # wrong score shape
        lambda: predictor_corrector(lambda x, t: x[:, :1], process, x, 3, predictor="none"),
    ]
    for i, call in enumerate(bad):
        with pytest.raises(ValueError):
            call()
            pytest.fail(f"case {i} did not raise")
    with pytest.raises(ValueError, match="reverse_diffusion"):  # the message lists the choices
        predictor_corrector(model, process, x, 3, predictor="nope")


def test_sde_samplers_default_to_the_process_grid():
    # grid="auto": uniform in t for VP (score-SDE), ρ = 7 for EDM, whose t = σ makes a uniform grid
    # spend nearly every step at high noise (measured, 20 000 samples, 200 steps: total 0.017 with
    # the ρ grid against 0.50 with the uniform one).
    mixture = _mixture()
    for process, grid in ((sm.VP(), "uniform"), (sm.EDM(), "edm_rho")):
        model = mixture.score_model(process)
        for sampler in (euler_maruyama, reverse_diffusion, ancestral):
            a = sampler(model, process, (64, 2), 20, generator=_gen(2)).x
            b = sampler(model, process, (64, 2), 20, generator=_gen(2), grid=grid).x
            assert torch.equal(a, b)
    process = sm.EDM()
    model = mixture.score_model(process)
    x = euler_maruyama(model, process, (20_000, 2), 200, generator=_gen(0)).x
    assert mixture_error(x, mixture, generator=_gen(1))["total"] < 0.05
