"""Probability-flow log-likelihood and bits/dim against exact Gaussian and mixture densities.

The exact mixture score model gives ∇log p_t for every t, so the ODE answer must equal the exact
log-density of the noised law p_{t_min} (the flow starts at t_min, not at 0) up to the solver
error and the prior mismatch log p_{t_max} − log π, both measured here.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import scorematch as sm
from scorematch.likelihood import BitsPerDim, LogLikelihood, bits_per_dim, log_likelihood

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny batched ops are far slower with contended intra-op threads; restore afterwards.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _mixture(dtype=F64) -> sm.GaussianMixture:
    """Three anisotropic components in 2-D, one of them narrow (std 0.1 along an axis)."""
    means = torch.tensor([[-1.5, 0.0], [1.5, 1.0], [0.5, -1.5]], dtype=dtype)
    angle = torch.tensor(0.5, dtype=dtype)
    rot = torch.stack(
        [torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])]
    )
    covs = torch.stack(
        [
            torch.diag(torch.tensor([0.30, 0.05], dtype=dtype)),
            rot @ torch.diag(torch.tensor([0.40, 0.02], dtype=dtype)) @ rot.T,
            torch.diag(torch.tensor([0.10, 0.10], dtype=dtype)),
        ]
    )
    return sm.GaussianMixture(means, covs, torch.tensor([0.4, 0.35, 0.25], dtype=dtype))


def _samples(n: int = 100, seed: int = 0) -> torch.Tensor:
    return _mixture().sample(n, generator=torch.Generator().manual_seed(seed))


PROCESSES = {
    "VP": lambda: sm.VP(t_min=1e-4),
    "VE": lambda: sm.VE(),
    "SubVP": lambda: sm.SubVP(t_min=1e-4),
    "EDM": lambda: sm.EDM(),
}


@pytest.mark.parametrize("name", list(PROCESSES))
def test_exact_divergence_matches_mixture_density(name):
    process = PROCESSES[name]()
    mixture = _mixture()
    model = mixture.score_model(process)
    x = _samples()
    out = log_likelihood(model, process, x, rtol=1e-6, atol=1e-6, return_latent=True)
    target = model.log_prob(x, process.t_min)  # exact log p_{t_min}
    # Solver error + prior mismatch, each well below the 1e-2 nats asked for.
    assert (out.log_prob - target).abs().max() < 1e-2
    assert (out.log_prob - target).abs().mean() < 2e-3
    # The prior stands in for p_{t_max}; to first order they differ by α_T x_T·E[x₀]/σ_T²,
    # |E[x₀]| ≈ 0.2 and |x_T|/σ_T ≲ 3, i.e. ≲ 0.6 α_T/σ_T = 0.004 (VP) and 0.012 (VE, EDM).
    mismatch = process.prior_log_prob(out.latent) - model.log_prob(out.latent, process.t_max)
    assert mismatch.abs().max() < 1e-2
    assert mismatch.abs().mean() < 3e-3
    # The clean density is within the blur of noise σ_{t_min} (≤ 0.01 here).
    assert (target - mixture.log_prob(x)).abs().max() < 2e-2


def test_both_time_variables_solve_the_same_ode():
    process = sm.VE()
    model = _mixture().score_model(process)
    x = _samples(30)
    exact_end = lambda z: model.log_prob(z, process.t_max)  # noqa: E731 — removes the prior mismatch
    target = model.log_prob(x, process.t_min)
    a = log_likelihood(
        model, process, x, time="angle", prior_log_prob=exact_end, rtol=1e-6, atol=1e-6
    )
    t = log_likelihood(model, process, x, time="t", prior_log_prob=exact_end, rtol=1e-6, atol=1e-6)
    assert (a.log_prob - target).abs().max() < 1e-3
    assert (t.log_prob - target).abs().max() < 1e-3
    assert a.nfe < t.nfe  # the angle is the cheaper variable (benchmarks/likelihood.py)


def test_gaussian_closed_form_density_and_flow():
    """For N(μ, Σ) the flow is linear: in Σ's eigenbasis each coordinate of x_t − α_t μ scales by
    √((α_t²λ + σ_t²)/(α_0²λ + σ_0²)); the density is the noised Gaussian's, to solver accuracy."""
    process = sm.VP(t_min=1e-3)
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    a = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, -0.2], [0.0, -0.2, 0.8]], dtype=F64)
    cov = a @ a.T + 0.05 * torch.eye(3, dtype=F64)
    gauss = sm.Gaussian(mean, cov)
    model = gauss.score_model(process)
    x = gauss.sample(64, generator=torch.Generator().manual_seed(3))
    out = log_likelihood(
        model,
        process,
        x,
        rtol=1e-8,
        atol=1e-8,
        prior_log_prob=lambda z: model.log_prob(z, process.t_max),
        return_latent=True,
    )
    assert (out.log_prob - model.log_prob(x, process.t_min)).abs().max() < 1e-4
    lam, u = torch.linalg.eigh(cov)
    (a0, s0), (a1, s1) = (process.marginal(torch.tensor(t, dtype=F64)) for t in (1e-3, 1.0))
    gain = torch.sqrt((a1**2 * lam + s1**2) / (a0**2 * lam + s0**2))
    expected = a1 * mean + ((x - a0 * mean) @ u) * gain @ u.T
    torch.testing.assert_close(out.latent, expected, rtol=0, atol=1e-5)


def test_hutchinson_is_unbiased():
    """Each row gets its own probe: 300 copies of 8 points give 400 independent estimates each."""
    process = sm.VP(t_min=1e-3)
    model = _mixture().score_model(process)
    x = _samples(8, seed=1)
    exact = log_likelihood(model, process, x, rtol=1e-6, atol=1e-6).log_prob
    reps = 300
    spread = {}
    for probe in ("rademacher", "gaussian"):
        est = log_likelihood(
            model,
            process,
            x.repeat(reps, 1),
            divergence="hutchinson",
            probe=probe,
            generator=torch.Generator().manual_seed(7),
        ).log_prob.reshape(reps, -1)
        spread[probe] = est.std(0)
        mean, se = est.mean(0), est.std(0) / math.sqrt(reps)
        assert (est.std(0) > 0.05).all()  # the estimator is genuinely noisy here
        # 8 points at 4.5 standard errors: a false alarm would need a >1e-4 event; the solver
        # error (≲1e-4 at the default tolerance) is far below the ~0.03 standard error.
        assert ((mean - exact).abs() < 4.5 * se).all(), (mean - exact) / se
    # Averaging 4 probes divides the variance by 4.
    est4 = log_likelihood(
        model,
        process,
        x.repeat(reps, 1),
        divergence="hutchinson",
        probes=4,
        generator=torch.Generator().manual_seed(8),
    ).log_prob.reshape(reps, -1)
    ratio = (est4.std(0) / spread["rademacher"]).mean()
    assert 0.4 < ratio < 0.6


def test_same_seed_same_result_and_probe_noise_varies():
    process = sm.VP()
    model = _mixture().score_model(process)
    x = _samples(20)
    kw = dict(divergence="hutchinson", probes=2)
    a = log_likelihood(model, process, x, generator=torch.Generator().manual_seed(5), **kw)
    b = log_likelihood(model, process, x, generator=torch.Generator().manual_seed(5), **kw)
    c = log_likelihood(model, process, x, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a.log_prob, b.log_prob) and a.nfe == b.nfe
    assert not torch.allclose(a.log_prob, c.log_prob)


class _ImageModel(nn.Module):
    """A (B, 1, 2, 2) score model built on a 4-D Gaussian oracle, with a trainable (unused) weight."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.weight = nn.Parameter(torch.ones((), dtype=F64))

    def forward(self, x, t):
        return self.weight * self.inner(x.reshape(x.shape[0], 4), t).reshape(x.shape)


def test_image_shaped_inputs_match_flat_and_keep_no_graph():
    process = sm.VP()
    gauss = sm.Gaussian(torch.zeros(4, dtype=F64), torch.tensor([0.2, 0.5, 1.0, 2.0], dtype=F64))
    flat_model = gauss.score_model(process)
    image_model = _ImageModel(flat_model)
    x = gauss.sample(16, generator=torch.Generator().manual_seed(0))
    flat = log_likelihood(flat_model, process, x)
    image = log_likelihood(image_model, process, x.reshape(16, 1, 2, 2), return_latent=True)
    torch.testing.assert_close(image.log_prob, flat.log_prob, rtol=0, atol=1e-10)
    assert image.latent.shape == (16, 1, 2, 2)
    assert not image.log_prob.requires_grad and image_model.weight.grad is None
    hutch = log_likelihood(
        image_model,
        process,
        x.reshape(16, 1, 2, 2),
        divergence="hutchinson",
        probes=64,
        generator=torch.Generator().manual_seed(0),
    )
    assert (hutch.log_prob - flat.log_prob).abs().mean() < 0.2


def test_result_type_nfe_and_time_range():
    process = sm.EDM()
    model = _mixture().score_model(process)
    x = _samples(10)
    times = []
    calls = 0

    def recording(xx, t):
        nonlocal calls
        calls += 1
        times.append(t)
        return model(xx, t)

    for time in ("angle", "t"):
        times.clear()
        calls = 0
        out = log_likelihood(recording, process, x, time=time, return_latent=True)
        log_prob, nfe = out  # unpacks as a pair
        assert isinstance(out, LogLikelihood) and out.log_prob is log_prob and out.nfe == nfe
        assert nfe == calls  # one model forward pass per ODE evaluation
        seen = torch.cat(times)
        # Steps stop at t_max instead of overshooting it: the model is never queried outside.
        assert seen.min() >= process.t_min * (1 - 1e-9)
        assert seen.max() <= process.t_max * (1 + 1e-9)
    assert log_likelihood(model, process, x).latent is None


def test_float32_and_inference_mode():
    process = sm.VP()
    model = _mixture().score_model(process)
    x = _samples(50)
    ref = log_likelihood(model, process, x).log_prob
    out32 = log_likelihood(model, process, x.float()).log_prob
    assert out32.dtype == torch.float32
    assert (out32.double() - ref).abs().max() < 1e-3
    with torch.inference_mode():
        out = log_likelihood(model, process, x.clone()).log_prob
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


# -- bits per dimension ---------------------------------------------------------------------------


def _wide_gaussian(process, std: float = 0.5):
    """N(0, std² I) on 4 dims in the model's space, reshaped to (B, 1, 2, 2)."""
    gauss = sm.Gaussian(torch.zeros(4, dtype=F64), torch.full((4,), std**2, dtype=F64))
    return gauss, _ImageModel(gauss.score_model(process))


def test_bits_per_dim_formula_and_score_sde_offsets():
    process = sm.VP()
    _, model = _wide_gaussian(process)
    x = torch.randint(0, 256, (6, 1, 2, 2), generator=torch.Generator().manual_seed(0)).to(F64)
    d = 4
    # Direct computation with the same generator: dequantization noise first, then the ODE.
    g = torch.Generator().manual_seed(11)
    u = torch.rand(x.shape, generator=g, dtype=F64)
    for lo, hi, offset in ((0.0, 1.0, 8.0), (-1.0, 1.0, 7.0)):
        y = lo + (hi - lo) * (x + u) / 256
        log_p = log_likelihood(model, process, y).log_prob
        expected = -log_p / (d * math.log(2)) + offset  # score-SDE: bpd of y plus the offset
        bpd = bits_per_dim(
            model, process, x, model_range=(lo, hi), generator=torch.Generator().manual_seed(11)
        )
        assert isinstance(bpd, BitsPerDim) and bpd.bpd.shape == (6,)
        torch.testing.assert_close(bpd.bpd, expected, rtol=0, atol=1e-9)
    # The same map given as scale/shift.
    same = bits_per_dim(
        model, process, x, scale=2 / 256, shift=-1.0, generator=torch.Generator().manual_seed(11)
    )
    torch.testing.assert_close(same.bpd, bpd.bpd, rtol=0, atol=1e-12)
    # Continuous data: bpd = −(log p + log|det|)/(D ln 2).
    y = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    log_p = log_likelihood(model, process, y).log_prob
    cont = bits_per_dim(model, process, y, data_range=None, log_det=-3.0)
    torch.testing.assert_close(cont.bpd, -(log_p - 3.0) / (d * math.log(2)), rtol=0, atol=1e-9)


def test_bits_per_dim_known_answer_under_uniform_dequantization():
    """Model N(0, s²) per dim on [−1, 1): for level k, y = a(k + u) + b with u ~ U[0, 1), so
    E_u[−log p(y)] = ½ log(2π s²) + (E y²)/(2 s²), E y² = (a(k + ½) + b)² + a²/12, and
    bpd = that/ln 2 − log₂ a.  It also bounds −log₂ P(bin) from above (Jensen)."""
    process = sm.VP()
    s = 0.5
    _, model = _wide_gaussian(process, s)
    levels = torch.tensor([3.0, 100.0, 128.0, 250.0], dtype=F64)
    reps = 300
    x = levels.repeat(reps)[:, None].expand(-1, 4).reshape(-1, 1, 2, 2).contiguous()
    bpd = bits_per_dim(model, process, x, generator=torch.Generator().manual_seed(2)).bpd
    bpd = bpd.reshape(reps, -1)
    a, b = 2 / 256, -1.0
    alpha, sigma = process.marginal(torch.tensor(process.t_min, dtype=F64))
    v = alpha**2 * s**2 + sigma**2  # the flow gives the density of the blurred law p_{t_min}
    ey2 = (a * (levels + 0.5) + b) ** 2 + a**2 / 12
    closed = (0.5 * torch.log(2 * math.pi * v) + ey2 / (2 * v)) / math.log(2) - math.log2(a)
    se = bpd.std(0) / math.sqrt(reps)
    assert ((bpd.mean(0) - closed).abs() < 4 * se + 1e-3).all()
    normal = torch.distributions.Normal(torch.zeros((), dtype=F64), v.sqrt())
    mass = normal.cdf(a * (levels + 1) + b) - normal.cdf(a * levels + b)
    assert (bpd.mean(0) >= -torch.log2(mass) - 4 * se).all()


def test_bits_per_dim_same_seed_and_integer_input():
    process = sm.VP()
    _, model = _wide_gaussian(process)
    x = torch.randint(0, 256, (5, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    a = bits_per_dim(model, process, x.to(F64), generator=torch.Generator().manual_seed(3))
    b = bits_per_dim(model, process, x.to(F64), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.bpd, b.bpd)
    # Integer tensors are accepted, as the default dtype.
    c = bits_per_dim(model, process, x, generator=torch.Generator().manual_seed(3))
    d = bits_per_dim(model, process, x.float(), generator=torch.Generator().manual_seed(3))
    assert c.bpd.dtype == torch.get_default_dtype() and torch.equal(c.bpd, d.bpd)


# -- per-sample steps -------------------------------------------------------------------------------


def test_per_sample_steps_match_the_batch_solver_and_cost_less():
    process = sm.VP(t_min=1e-4)
    model = _mixture().score_model(process)
    x = _samples(200, seed=3)
    target = model.log_prob(x, process.t_min)
    own = log_likelihood(model, process, x)
    batch = log_likelihood(model, process, x, step_control="batch")
    for out in (own, batch):
        assert (out.log_prob - target).abs().mean() < 2e-3
    assert (own.log_prob - batch.log_prob).abs().max() < 2e-3
    # Cost: every sample its own evaluations; the batch solver charges its count to every sample.
    assert own.nfe_per_sample.shape == (200,) and own.nfe_per_sample.dtype == torch.int64
    assert int(own.nfe_per_sample.max()) == own.nfe  # the slowest sample sits in every call
    assert torch.equal(batch.nfe_per_sample, torch.full((200,), batch.nfe))
    assert own.nfe_per_sample.double().mean() < batch.nfe


def test_a_samples_log_likelihood_does_not_depend_on_its_batch():
    process = sm.EDM()
    model = _mixture().score_model(process)
    x = _samples(40, seed=4)
    whole = log_likelihood(model, process, x)
    part = log_likelihood(model, process, x[:7])
    torch.testing.assert_close(part.log_prob, whole.log_prob[:7], rtol=0, atol=1e-10)
    assert torch.equal(part.nfe_per_sample, whole.nfe_per_sample[:7])
    batch_whole = log_likelihood(model, process, x, step_control="batch")
    batch_part = log_likelihood(model, process, x[:7], step_control="batch")
    assert batch_whole.nfe != batch_part.nfe  # one step for all: the batch sets each row's steps


def test_create_graph_through_per_sample_steps():
    """Differentiating through the accepted per-sample steps gives ∇ₓ log p_{t_min}(x), the score
    of the noised Gaussian, to the solver's accuracy (the step sizes are not differentiated)."""
    process = sm.VP(t_min=1e-3)
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    a = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, -0.2], [0.0, -0.2, 0.8]], dtype=F64)
    gauss = sm.Gaussian(mean, a @ a.T + 0.05 * torch.eye(3, dtype=F64))
    model = gauss.score_model(process)
    x = gauss.sample(16, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    exact_end = lambda z: model.log_prob(z, process.t_max)  # noqa: E731
    out = log_likelihood(model, process, x, rtol=1e-8, atol=1e-8, prior_log_prob=exact_end,
                         create_graph=True)  # fmt: skip
    (grad,) = torch.autograd.grad(out.log_prob.sum(), x)
    t_min = torch.full((16,), process.t_min, dtype=F64)
    torch.testing.assert_close(grad, model(x.detach(), t_min), rtol=0, atol=1e-5)


def test_step_control_choices():
    process = sm.VP()
    model = _mixture().score_model(process)
    x = _samples(8)
    with pytest.raises(ValueError, match="step_control must be"):
        log_likelihood(model, process, x, step_control="global")
    with pytest.raises(ValueError, match="step_control='batch'"):
        log_likelihood(model, process, x, solver="dopri8")
    with pytest.raises(ValueError, match="unknown solver 'tsit5'"):
        log_likelihood(model, process, x, solver="tsit5", step_control="batch")
    with pytest.raises(ValueError, match="options"):
        log_likelihood(model, process, x, options={"step_size": 0.1})
    for solver in ("tsit5", "bosh3"):
        out = log_likelihood(model, process, x, solver=solver, rtol=1e-6, atol=1e-6)
        assert (out.log_prob - model.log_prob(x, process.t_min)).abs().max() < 1e-2


# -- user mistakes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(divergence="trace"), "divergence"),
        (dict(probes=0), "probes"),
        (dict(probes=1.5), "probes"),
        (dict(probe="sphere"), "probe"),
        (dict(solver="rk45"), "solver"),
        (dict(time="lambda"), "time"),
        (dict(rtol=0.0), "rtol"),
        (dict(atol=-1.0), "atol"),
        (dict(t_min=0.5, t_max=0.5), "t_min < t_max"),
        (dict(t_min=-0.1), "t_min"),
    ],
)
def test_log_likelihood_bad_arguments(kwargs, match):
    process = sm.VP()
    model = _mixture().score_model(process)
    with pytest.raises(ValueError, match=match):
        log_likelihood(model, process, _samples(4), **kwargs)


def test_log_likelihood_bad_inputs():
    process = sm.VP()
    model = _mixture().score_model(process)
    with pytest.raises(ValueError, match="batch"):
        log_likelihood(model, process, torch.zeros(3, dtype=F64))
    bad = _samples(4)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        log_likelihood(model, process, bad)


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (torch.full((2, 4), 256.0), {}, "outside"),
        (torch.full((2, 4), -1.0), {}, "outside"),
        (torch.full((2, 4), 1.5), {}, "integer"),
        (torch.full((2, 4), 1.0), dict(data_range=(5, 5)), "data_range"),
        (torch.full((2, 4), 1.0), dict(model_range=(1, -1)), "model_range"),
        (torch.full((2, 4), 1.0), dict(dequantize="beta"), "dequantize"),
        (torch.full((2, 4), 1.0), dict(scale=0.0), "scale"),
        (torch.full((2, 4), 1.0), dict(data_range=None, scale=2.0), "data_range"),
        (torch.full((2, 4), 1.0), dict(log_det=torch.zeros(3)), "log_det"),
    ],
)
def test_bits_per_dim_bad_inputs(x, kwargs, match):
    process = sm.VP()
    gauss = sm.Gaussian(torch.zeros(4, dtype=F64), torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match=match):
        bits_per_dim(gauss.score_model(process), process, x.to(F64), **kwargs)


def test_create_graph_gives_the_gradient_of_the_solved_log_likelihood():
    """Maximum likelihood through the ODE: d(mean log p)/dθ matches central differences of the
    same fixed-step solve, and x gets its gradient (the score of the model's density) too."""
    process = sm.EDM()
    net = sm.models.build_model("mlp", (2,), seed=0, width=16, depth=1).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move off the initialisation (a zero output layer blocks gradients)
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    model = sm.parametrization.wrap(net, process, "edm", sigma_data=1.0)
    x = _samples(8).requires_grad_(True)

    def mean_log_prob(create_graph: bool) -> torch.Tensor:
        out = log_likelihood(
            model, process, x, solver="rk4", options={"step_size": 0.1}, create_graph=create_graph
        )
        return out.log_prob.mean()

    value = mean_log_prob(True)
    assert value.requires_grad and not mean_log_prob(False).requires_grad
    params = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(value, [*params, x])
    assert grads[-1].shape == x.shape and torch.isfinite(grads[-1]).all()
    checked = 0
    for p, g in zip(params, grads[:-1], strict=True):
        flat, gflat = p.data.view(-1), g.reshape(-1)
        i = int(gflat.abs().argmax())
        if gflat[i] == 0:
            continue
        old, h = flat[i].item(), 1e-5
        flat[i] = old + h
        up = mean_log_prob(False).item()
        flat[i] = old - h
        down = mean_log_prob(False).item()
        flat[i] = old
        assert (up - down) / (2 * h) == pytest.approx(gflat[i].item(), rel=1e-5, abs=1e-9)
        checked += 1
    assert checked == len(params)
    # d(mean log p)/dx₀ = ∇log p(x₀)/B, the model density's own score, by central differences too.
    old, h = x.data[0, 0].item(), 1e-5
    x.data[0, 0] = old + h
    up = mean_log_prob(False).item()
    x.data[0, 0] = old - h
    down = mean_log_prob(False).item()
    x.data[0, 0] = old
    assert (up - down) / (2 * h) == pytest.approx(grads[-1][0, 0].item(), rel=1e-5, abs=1e-9)


def test_the_api_guide_quotes_the_likelihood_defaults():
    import inspect
    import re
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text().split())
    found = re.findall(
        r'`step_control="(\w+)"`, the default: `solver="(\w+)"` with PI step control, '
        r"rtol = atol = ([\de.-]+);.*?\(`time=\"(\w+)\"`",
        text,
    )
    assert len(found) == 1, found
    control, solver, tol, time = found[0]
    defaults = {k: v.default for k, v in inspect.signature(log_likelihood).parameters.items()}
    assert (control, solver, time) == (
        defaults["step_control"],
        defaults["solver"],
        defaults["time"],
    )
    assert float(tol) == defaults["rtol"] == defaults["atol"]


def test_the_api_guide_quotes_the_measured_likelihood_costs():
    """docs/api.md's evaluation counts and errors are those of benchmarks/results/likelihood.md's
    2-D VP table (the default, the recipe, the batch-step default before, tolerances 2e-5, 1e-4)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = " ".join((root / "docs" / "api.md").read_text().split())
    results = (root / "benchmarks" / "results" / "likelihood.md").read_text()
    vp = results.split("### VP")[1].split("###")[0]

    def row(prefix: str) -> list[str]:
        (found,) = [r for r in vp.splitlines() if r.startswith(f"| {prefix} |")]
        return [c.strip() for c in found.strip("|").split("|")]

    default = row("after (per-sample steps): dopri5, angle, tol 1e-05")
    recipe = row("score-SDE recipe: scipy RK45, t, tol 1e-5")
    before = row("before (batch steps): dopri5, angle, tol 1e-05")
    at_2e5 = row("after (per-sample steps): dopri5, angle, tol 2e-05")
    at_1e4 = row("after (per-sample steps): dopri5, angle, tol 1e-04")
    quoted = re.findall(
        r"the default takes (\d+) evaluations per sample \(max (\d+)\) for an ODE error of "
        r"([\d.e-]+) nats, where score-SDE's recipe \(RK45, tol 1e-5\) takes (\d+) for ([\d.e-]+) "
        r"and one step for the batch took (\d+) for ([\d.e-]+); `rtol=atol=2e-5` matches the "
        r"recipe's total error at (\d+) \(([\d.]+)×\), and `1e-4` costs (\d+)",
        text,
    )
    assert len(quoted) == 1, quoted
    q = quoted[0]
    assert (int(q[0]), int(q[1])) == (round(float(default[1])), int(default[2]))
    assert float(q[2]) == float(f"{float(default[4]):.1e}")
    assert (int(q[3]), float(q[4])) == (round(float(recipe[1])), float(f"{float(recipe[4]):.1e}"))
    assert (int(q[5]), float(q[6])) == (round(float(before[1])), float(f"{float(before[4]):.1e}"))
    assert float(at_2e5[3]) <= float(recipe[3])  # "matches the recipe's total error"
    assert int(q[7]) == round(float(at_2e5[1]))
    assert float(q[8]) == round(float(at_2e5[1]) / float(recipe[1]), 2)
    assert int(q[9]) == round(float(at_1e4[1]))
