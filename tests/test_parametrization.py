"""Parametrization wrappers, at_time and NoiseLevels against the exact mixture oracle (float64).

Each wrapper is fed the network that a perfect model of its kind would be (built from the exact
mixture score), so it must give back the exact score and posterior mean up to rounding: every
tolerance here is 1e-10 relative, far above float64 rounding (~1e-15 times the condition of the
conversions) and far below any formula error (a wrong coefficient changes results at O(1)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _shared import mixture

from scorematch.objectives import ism
from scorematch.parametrization import (
    DataPrediction,
    EDMPrecond,
    EpsilonPrediction,
    ScorePrediction,
    at_time,
    default_noise_input,
    wrap,
)
from scorematch.processes import EDM, VE, VP, NoiseLevels, SubVP

F64 = torch.float64
PROCESSES = {
    "VE": VE(),
    "VP": VP(),
    "SubVP": SubVP(),
    "EDM": EDM(),
    "NCSN": NoiseLevels.geometric(),
}


def noisy_batch(process, n: int = 64, seed: int = 0):
    """Times spread log-uniformly over the whole range (ends included) and x_t ~ p_t at each."""
    g = torch.Generator().manual_seed(seed)
    t = torch.exp(torch.linspace(math.log(process.t_min), math.log(process.t_max), n, dtype=F64))
    alpha, sigma = process.marginal(t)
    x0 = mixture().sample(n, generator=g)
    x = alpha[:, None] * x0 + sigma[:, None] * torch.randn(n, 2, generator=g, dtype=F64)
    return x, t


def time_of(process, c, noise_input):
    """Invert the wrapper's noise input back to the process time."""
    return c if noise_input == "t" else process.t_of_log_snr(-8.0 * c)


def assert_close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def assert_score_close(got, want, x, t, process):
    """1e-10 relative, plus the rounding floor of the x0/D → score conversion: it divides a
    difference of O(|x|) numbers by σ_t², so it cannot beat ~eps·|x|/σ_t² (SubVP at t_min has
    σ_t² ≈ 1e-8); 100× that floor is still 1e-6 of the score there."""
    sigma = process.marginal(t)[1]
    floor = 100 * torch.finfo(F64).eps * x.abs().amax(1, keepdim=True) / sigma[:, None] ** 2
    err = (got - want).abs()
    assert bool((err <= 1e-10 * (1 + want.abs()) + floor).all()), float(err.max())


@pytest.mark.parametrize("name", list(PROCESSES))
@pytest.mark.parametrize("noise_input", ["t", "log_sigma"])
def test_eps_x0_score_wrappers_reproduce_exact_score(name, noise_input):
    process = PROCESSES[name]
    exact = mixture().score_model(process)
    x, t = noisy_batch(process)

    def eps_net(x_in, c):
        tt = time_of(process, c, noise_input)
        return -process.marginal(tt)[1][:, None] * exact(x_in, tt)

    def x0_net(x_in, c):
        return exact.denoise(x_in, time_of(process, c, noise_input))

    def scaled_score_net(x_in, c):
        tt = time_of(process, c, noise_input)
        return process.marginal(tt)[1][:, None] * exact(x_in, tt)

    def score_net(x_in, c):
        return exact(x_in, time_of(process, c, noise_input))

    models = [
        EpsilonPrediction(eps_net, process, noise_input=noise_input),
        DataPrediction(x0_net, process, noise_input=noise_input),
        ScorePrediction(scaled_score_net, process, noise_input=noise_input),
        ScorePrediction(score_net, process, scale_by_sigma=False, noise_input=noise_input),
    ]
    want_score, want_x0 = exact(x, t), exact.denoise(x, t)
    for model in models:
        assert_score_close(model(x, t), want_score, x, t, process)
        assert_close(model.denoise(x, t), want_x0)


def edm_f_net(process, exact, sigma_data):
    """The F of Karras et al. (2022) that makes D exact, written from Table 1 independently."""

    def net(x_in, c_noise):
        sigma_hat = torch.exp(4.0 * c_noise)
        t = process.t_of_log_snr(-2.0 * sigma_hat.log())
        alpha = process.marginal(t)[0][:, None]
        s2 = sigma_hat[:, None] ** 2
        y = x_in * torch.sqrt(s2 + sigma_data**2)  # x_in = c_in y
        d = exact.denoise(alpha * y, t)
        c_skip = sigma_data**2 / (s2 + sigma_data**2)
        c_out = sigma_hat[:, None] * sigma_data / torch.sqrt(s2 + sigma_data**2)
        return (d - c_skip * y) / c_out

    return net


@pytest.mark.parametrize("name", list(PROCESSES))
def test_edm_precond_reproduces_exact_score(name):
    process = PROCESSES[name]
    exact = mixture().score_model(process)
    x, t = noisy_batch(process)
    sigma_data = 0.7
    model = EDMPrecond(edm_f_net(process, exact, sigma_data), process, sigma_data=sigma_data)
    assert_score_close(model(x, t), exact(x, t), x, t, process)
    assert_close(model.denoise(x, t), exact.denoise(x, t))


def test_edm_coefficients_closed_forms():
    sd = 0.5
    model = EDMPrecond(lambda x, c: x, EDM())  # sigma_data taken from the process
    assert model.sigma_data == sd
    c = model.coefficients(torch.tensor(sd, dtype=F64))
    assert_close(c.c_skip, torch.tensor(0.5, dtype=F64))
    assert_close(c.c_out, torch.tensor(sd / math.sqrt(2), dtype=F64))
    assert_close(c.c_in, torch.tensor(1 / (sd * math.sqrt(2)), dtype=F64))
    assert_close(c.c_noise, torch.tensor(0.25 * math.log(sd), dtype=F64))
    # Limits: no noise → D = y exactly; huge noise → D = c_out F with c_out → σ_d.
    c = model.coefficients(torch.tensor([1e-8, 1e8], dtype=F64))
    assert_close(c.c_skip, torch.tensor([1.0, 0.0], dtype=F64))
    assert_close(c.c_out, torch.tensor([1e-8, sd], dtype=F64))
    # Unit-variance input: Var(c_in y) = c_in² (σ_d² + σ²) = 1.
    sig = torch.tensor([0.01, 0.3, 2.0, 50.0], dtype=F64)
    c = model.coefficients(sig)
    assert_close(c.c_in**2 * (sd**2 + sig**2), torch.ones_like(sig))
    # Default σ_d without a process value is 0.5; an explicit one wins.
    assert EDMPrecond(lambda x, c: x, VP()).sigma_data == 0.5
    assert EDMPrecond(lambda x, c: x, EDM(sigma_data=1.3), sigma_data=0.2).sigma_data == 0.2


def test_wrappers_pass_the_documented_noise_input():
    seen = {}

    def net(x_in, c):
        seen["c"] = c
        return torch.zeros_like(x_in)

    x = torch.zeros(3, 2, dtype=F64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    vp = VP()
    EpsilonPrediction(net, vp)(x, t)
    assert torch.equal(seen["c"], t)
    DataPrediction(net, vp, noise_input="log_sigma")(x, t)
    alpha, sigma = vp.marginal(t)
    assert_close(seen["c"], 0.25 * torch.log(sigma / alpha))
    EDMPrecond(net, EDM())(x, t)
    assert_close(seen["c"], 0.25 * t.log())
    assert default_noise_input(VE()) == "t" and default_noise_input(SubVP()) == "t"
    assert default_noise_input(EDM()) == "log_sigma"
    assert default_noise_input(NoiseLevels([0.5, 0.1])) == "log_sigma"


def test_event_shape_and_float32():
    """Images (B, C, H, W) and float32 go through without 2-D assumptions."""
    process = VP()
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.1, 0.3, 0.6, 0.9])
    alpha, sigma = process.marginal(t)
    eps_model = EpsilonPrediction(lambda z, c: z, process)
    want = -x / sigma[:, None, None, None]
    torch.testing.assert_close(eps_model(x, t), want)
    assert eps_model(x, t).dtype == torch.float32
    d = EDMPrecond(lambda z, c: torch.zeros_like(z), process).denoise(x, t)
    c_skip = 0.25 / ((sigma / alpha) ** 2 + 0.25)
    torch.testing.assert_close(d, c_skip[:, None, None, None] * x / alpha[:, None, None, None])


def test_wrap_factory_and_validation():
    net = lambda x, c: x  # noqa: E731
    assert isinstance(wrap(net, VP(), "eps"), EpsilonPrediction)
    assert isinstance(wrap(net, VP(), "x0"), DataPrediction)
    assert isinstance(wrap(net, VP(), "score", scale_by_sigma=False), ScorePrediction)
    assert isinstance(wrap(net, EDM(), "edm", sigma_data=1.0), EDMPrecond)
    with pytest.raises(ValueError, match="unknown prediction"):
        wrap(net, VP(), "velocity")
    with pytest.raises(ValueError, match="bad options"):
        wrap(net, VP(), "eps", sigma_data=1.0)
    with pytest.raises(ValueError, match="noise_input"):
        EpsilonPrediction(net, VP(), noise_input="sigma")
    with pytest.raises(ValueError, match="Process"):
        EpsilonPrediction(net, "vp")
    with pytest.raises(ValueError, match="sigma_data"):
        EDMPrecond(net, EDM(), sigma_data=-1.0)
    bad = EpsilonPrediction(lambda x, c: x[:, :1], VP())
    with pytest.raises(ValueError, match="input's shape"):
        bad(torch.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="shape"):
        EpsilonPrediction(net, VP())(torch.zeros(2, 3), torch.ones(3))


def test_at_time_scalar_and_per_sample():
    process = VP()
    exact = mixture().score_model(process)
    x, _ = noisy_batch(process, n=8)
    t = torch.linspace(0.05, 0.95, 8, dtype=F64)
    assert torch.equal(at_time(exact, 0.3)(x), exact(x, torch.full((8,), 0.3, dtype=F64)))
    assert torch.equal(at_time(exact, torch.tensor(0.3, dtype=F64))(x), exact(x, 0.3))
    assert torch.equal(at_time(exact, t)(x), exact(x, t))
    # t follows x's dtype at each call.
    seen = {}

    def spy(z, tt):
        seen["t"] = tt
        return z

    at_time(spy, torch.tensor(0.3, dtype=F64))(torch.zeros(5, 2))
    assert seen["t"].dtype == torch.float32 and seen["t"].shape == (5,)
    # A score function for torch.func: the exact Jacobian of the bound score (ISM's ingredient).
    fn = at_time(exact, 0.3)
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: fn(xi[None])[0]))(x)
    h = 1e-6
    for j in range(2):
        e = torch.zeros(2, dtype=F64)
        e[j] = h
        fd = (fn(x + e) - fn(x - e)) / (2 * h)
        torch.testing.assert_close(jac[:, :, j], fd, rtol=1e-6, atol=1e-6)
    # Per-sample times compose with the batched exact-trace ISM: each row is ISM at its own t.
    batched = ism(at_time(exact, t), x, reduction="none")
    rows = torch.cat([ism(at_time(exact, t[i]), x[i : i + 1], reduction="none") for i in range(8)])
    torch.testing.assert_close(batched, rows, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        at_time(exact, t)(x[:5])
    with pytest.raises(ValueError, match="shape"):
        at_time(exact, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="finite"):
        at_time(exact, float("nan"))


# -- NoiseLevels --------------------------------------------------------------------------------
def test_noise_ensemble_geometric_levels_exact():
    ens = NoiseLevels.geometric(0.01, 10.0, 10)
    assert ens.sigmas.dtype == F64 and ens.sigmas.shape == (10,)
    np.testing.assert_allclose(ens.sigmas.numpy(), np.geomspace(10.0, 0.01, 10), rtol=1e-14)
    assert ens.sigmas[0].item() == 10.0 and ens.sigmas[-1].item() == 0.01
    ratios = ens.sigmas[1:] / ens.sigmas[:-1]
    np.testing.assert_allclose(ratios.numpy(), 10 ** (-1 / 3), rtol=1e-14)
    assert (ens.t_min, ens.t_max, ens.prior_std, len(ens)) == (0.01, 10.0, 10.0, 10)
    default = NoiseLevels.geometric()
    assert torch.equal(default.sigmas, ens.sigmas)
    # Any order in, descending out.
    assert NoiseLevels([0.1, 1.0, 0.5]).sigmas.tolist() == [1.0, 0.5, 0.1]
    cfg = ens.config()
    assert cfg["name"] == "NoiseLevels"
    assert torch.equal(NoiseLevels(cfg["sigmas"]).sigmas, ens.sigmas)


def test_noise_ensemble_is_an_edm_like_process():
    ens = NoiseLevels.geometric(0.01, 10.0, 5)
    t = torch.tensor([0.01, 0.3, 2.0, 10.0], dtype=F64)
    alpha, sigma = ens.marginal(t)
    assert torch.equal(alpha, torch.ones_like(t)) and torch.equal(sigma, t)
    assert torch.equal(ens.log_alpha_rate(t), torch.zeros_like(t))
    # g² = dσ²/dt − 2fσ² = 2t
    assert_close(ens.diffusion(t) ** 2, 2 * t)
    assert_close(ens.t_of_log_snr(ens.log_snr(t)), t)
    z = ens.prior_sample((3, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    assert z.shape == (3, 2)


def test_noise_ensemble_sample_reproducible_and_uniform():
    ens = NoiseLevels.geometric(0.01, 10.0, 10)
    a = ens.sample(20000, generator=torch.Generator().manual_seed(1), dtype=F64)
    b = ens.sample(20000, generator=torch.Generator().manual_seed(1), dtype=F64)
    c = ens.sample(20000, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (20000,) and a.dtype == F64
    assert ens.sample(4).dtype == torch.get_default_dtype()
    # Every draw is a level, and each level has frequency 1/10 within 5 binomial SE.
    counts = (a[:, None] == ens.sigmas[None]).sum(0)
    assert counts.sum() == 20000
    se = math.sqrt(20000 * 0.1 * 0.9)
    assert (counts - 2000).abs().max() < 5 * se


@pytest.mark.parametrize(
    "bad",
    [[], [0.1, -1.0], [0.1, 0.0], [1.0, float("nan")], [1.0, float("inf")], [0.5, 0.5], [[1.0]]],
)
def test_noise_ensemble_validation(bad):
    with pytest.raises(ValueError, match="sigmas"):
        NoiseLevels(bad)


def test_noise_ensemble_geometric_validation():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        NoiseLevels.geometric(1.0, 0.1, 5)
    with pytest.raises(ValueError, match="n must be"):
        NoiseLevels.geometric(0.1, 1.0, 1)
    with pytest.raises(ValueError, match="sigma_min"):
        NoiseLevels.geometric(-0.1, 1.0, 3)
    with pytest.raises(ValueError, match="batch"):
        NoiseLevels.geometric().sample(0)
    single = NoiseLevels([0.3])
    assert single.t_min == single.t_max == 0.3
