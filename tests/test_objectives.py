"""ESM, ISM, SSM (+VR) and DSM against exact oracles (float64).

The identities under test:
- ESM(θ) − ISM(θ) = ½ E‖∇log p‖², free of θ (Hyvärinen 2005).  For a linear score on a sample whose
  empirical mean and covariance equal the Gaussian's exactly, both sample averages are the exact
  expectations, so the identity (and ∇θ ESM = ∇θ ISM) holds to rounding.  For an MLP on a mixture
  it holds up to Monte Carlo error, measured with common random numbers.
- E_v SSM = E_v SSM-VR = ISM for every projection with E[vvᵀ] = I (Song et al. 2019).
- DSM(θ) − ESM(θ; score of the σ-perturbed law) is free of θ (Vincent 2011).
Monte Carlo assertions use 4.5 standard errors (a false alarm has probability < 1e-5 per check;
seeds are fixed, so the suite is deterministic) and also require the θ-dependence being cancelled
to be many standard errors large, so the checks could see a wrong formula.
"""

from __future__ import annotations

import math

import pytest
import torch
from _shared import mixture
from torch import nn
from torch.func import jacrev, vmap

from scorematch.distributions import Gaussian, GaussianMixture
from scorematch.energy import EnergyScore
from scorematch.objectives import dsm, esm, ism, ssm
from scorematch.objectives.sliced import PROJECTIONS, projections

F64 = torch.float64
Z = 4.5  # Monte Carlo tolerance in standard errors


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class MLP(nn.Module):
    """A small SiLU network; ``scale`` spreads the initial weights so that different seeds give
    clearly different score functions."""

    def __init__(self, d: int, width: int = 32, out: int | None = None, seed: int = 0, scale=1.0):
        super().__init__()
        with torch.random.fork_rng():  # seeded initialisation without touching the global RNG
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Linear(d, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                nn.Linear(width, d if out is None else out),
            ).to(F64)  # fmt: skip
        with torch.no_grad():
            for p in self.net.parameters():
                p.mul_(scale)

    def forward(self, x):
        return self.net(x)


def linear_score(a: torch.Tensor, b: torch.Tensor):
    return lambda x: x @ a.T + b


def brute_trace(score_fn, x):
    """tr ∇ₓs by a Python loop over dimensions (reference only)."""
    x = x.detach().requires_grad_(True)
    s = score_fn(x).reshape(x.shape[0], -1)
    flat = []
    for i in range(s.shape[1]):
        (g,) = torch.autograd.grad(s[:, i].sum(), x, retain_graph=True)
        flat.append(g.reshape(x.shape[0], -1)[:, i])
    return torch.stack(flat, 1).sum(1)


def z_score(values: torch.Tensor) -> float:
    """|mean| in standard errors of the mean."""
    return float(values.mean().abs() / (values.std() / math.sqrt(values.numel())))


# ------------------------------------------------------------------------------------------------
# ESM − ISM
# ------------------------------------------------------------------------------------------------
def moment_matched_sample(gauss: Gaussian, n: int, seed: int) -> torch.Tensor:
    """n points whose empirical mean and (1/n) covariance equal the Gaussian's exactly."""
    z = torch.randn(n, gauss.dim, generator=gen(seed), dtype=F64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(z.T @ z / n)).T
    return gauss.mean_vector + z @ torch.linalg.cholesky(gauss.cov).T


def test_linear_model_esm_minus_ism_is_exact_constant_with_equal_gradients():
    cov = torch.tensor([[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 0.8]], dtype=F64)
    gauss = Gaussian(torch.tensor([0.5, -1.0, 2.0], dtype=F64), cov)
    x = moment_matched_sample(gauss, 500, seed=1)
    prec = torch.linalg.inv(cov)
    const = 0.5 * torch.trace(prec)  # ½ E‖∇log p‖² = ½ tr Σ⁻¹
    mu = gauss.mean_vector
    for seed in range(4):
        g = gen(10 + seed)
        a = (torch.randn(3, 3, generator=g, dtype=F64) * (seed + 0.5)).requires_grad_(True)
        b = torch.randn(3, generator=g, dtype=F64).requires_grad_(True)
        s = linear_score(a, b)
        e, i = esm(s, x, gauss.score), ism(s, x)
        # Closed forms: E ½‖Mx + c‖² = ½[tr MΣMᵀ + ‖Mμ + c‖²], M = A + Σ⁻¹, c = b − Σ⁻¹μ.
        m, c = a + prec, b - prec @ mu
        e_exact = 0.5 * (torch.trace(m @ cov @ m.T) + (m @ mu + c).square().sum())
        i_exact = torch.trace(a) + 0.5 * (torch.trace(a @ cov @ a.T) + (a @ mu + b).square().sum())
        torch.testing.assert_close(e, e_exact, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(i, i_exact, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(e - i, const, rtol=1e-10, atol=1e-10)
        ge = torch.autograd.grad(e, (a, b))
        gi = torch.autograd.grad(ism(s, x), (a, b))
        for u, v in zip(ge, gi):
            torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-10)
        assert ge[0].abs().max() > 0.1  # non-trivial gradients


def test_ism_trace_matches_brute_force_loop():
    model = MLP(4, seed=3)
    x = torch.randn(16, 4, generator=gen(0), dtype=F64)
    s = model(x)
    expected = brute_trace(model, x) + 0.5 * s.square().sum(1)
    for chunk in (None, 1, 3, 4, 100):
        got = ism(model, x, reduction="none", chunk_size=chunk)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_ism_vectorize_modes_agree_and_auto_falls_back_to_whole_batch():
    model = MLP(40, seed=4)  # D ≥ 32, where "auto" tries the per-sample path first
    x = torch.randn(9, 40, generator=gen(1), dtype=F64)
    ref = ism(model, x, reduction="none", vectorize="batch")
    for mode in ("samples", "auto"):
        got = ism(model, x, reduction="none", vectorize=mode)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
        g1 = torch.autograd.grad(got.sum(), list(model.parameters()))
        g2 = torch.autograd.grad(ref.sum(), list(model.parameters()), retain_graph=True)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # A function closing over per-sample values (like a model at per-sample times) only runs on
    # the whole batch: "samples" fails, "auto" falls back and is exact.
    t = torch.linspace(0.5, 2.0, 9, dtype=F64)
    timed = lambda y: model(y) * t[:, None]  # noqa: E731
    expected = brute_trace(timed, x) + 0.5 * timed(x).square().sum(1)
    with pytest.warns(UserWarning, match="cannot run per sample"):  # said, not silent
        got = ism(timed, x, reduction="none")
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="one sample"):
        ism(timed, x, vectorize="samples")
    # Data-dependent Python control flow cannot run under vmap either.
    branchy = lambda y: model(y) if bool(y.sum() > -1e9) else -model(y)  # noqa: E731
    with pytest.warns(UserWarning, match="vmap"):
        torch.testing.assert_close(ism(branchy, x), ism(model, x))

    # Other errors are the caller's: they propagate instead of silently switching paths.
    def broken(y):
        raise KeyError("not a vmap error")

    with pytest.raises(KeyError):
        ism(broken, x)


def test_mixture_mlp_esm_minus_ism_constant_in_theta():
    mix = mixture()
    x = mix.sample(20000, generator=gen(2))
    models = [MLP(2, seed=k, scale=1.0 + 0.5 * k) for k in range(4)]
    diffs, esms = [], []
    with torch.no_grad():
        true = mix.score(x)
    for model in models:
        e = esm(model, x, true, reduction="none")
        diffs.append((e - ism(model, x, reduction="none")).detach())
        esms.append(e.detach())
    for k in range(1, len(models)):
        # Common random numbers: the per-sample difference has mean zero exactly.
        assert z_score(diffs[k] - diffs[0]) < Z
        # ...while ESM itself changes with θ by far more than the error bar.
        assert z_score(esms[k] - esms[0]) > 30


def test_mixture_mlp_esm_and_ism_gradients_agree_in_expectation():
    mix = mixture()
    model = MLP(2, seed=5, scale=1.5)
    params = list(model.parameters())
    x = mix.sample(16000, generator=gen(3))
    true = mix.score(x)

    def flat_grad(loss):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    # Batch means over 16 independent batches give the standard error of each gradient component.
    diffs, grads = [], []
    for xb, tb in zip(x.split(1000), true.split(1000)):
        ge = flat_grad(esm(model, xb, tb))
        diffs.append(ge - flat_grad(ism(model, xb)))
        grads.append(ge)
    diffs, grad = torch.stack(diffs), torch.stack(grads).mean(0)
    mean, se = diffs.mean(0), diffs.std(0) / math.sqrt(diffs.shape[0])
    # Directions: the ESM gradient itself and a few fixed random ones.
    dirs = torch.cat([grad[None] / grad.norm(), torch.randn(4, grad.numel(), generator=gen(4))])
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    proj = diffs @ dirs.T  # (batches, directions)
    z = proj.mean(0).abs() / (proj.std(0) / math.sqrt(proj.shape[0]))
    assert (z < Z).all(), z
    assert (mean.abs() < Z * se + 1e-12).float().mean() > 0.99
    assert grad.norm() > 20 * mean.norm() / math.sqrt(mean.numel())


# ------------------------------------------------------------------------------------------------
# SSM
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variance_reduced", [False, True])
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_ssm_expectation_equals_ism(projection, variance_reduced):
    model = MLP(3, seed=7, scale=1.5)
    x = torch.randn(48, 3, generator=gen(5), dtype=F64) * 1.5
    reps = 400
    target = ism(model, x, reduction="none").detach()
    # One projection per copy of the batch: reps independent draws for every sample.
    values = ssm(
        model, x.repeat(reps, 1), projection=projection, variance_reduced=variance_reduced,
        generator=gen(6), reduction="none",
    ).detach().reshape(reps, -1)  # fmt: skip
    resid = values - target
    se = resid.std(0) / math.sqrt(reps)
    assert (resid.mean(0).abs() < 5.0 * se + 1e-12).all()  # 144 checks per case
    assert z_score(resid) < Z
    # n_projections averages the same estimator: the batch mean with many projections agrees too.
    many = ssm(model, x, n_projections=reps, projection=projection,
               variance_reduced=variance_reduced, generator=gen(7), reduction="none")  # fmt: skip
    assert (many.detach() - target).abs().max() < 6.0 * se.max() + 1e-12


@pytest.mark.parametrize("variance_reduced", [False, True])
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_ssm_equals_its_formula_with_the_drawn_directions(projection, variance_reduced):
    model = MLP(3, seed=8)
    x = torch.randn(10, 3, generator=gen(8), dtype=F64)
    m = 3
    v = projections(m, x, projection, generator=gen(9))  # the draws ssm will make
    jac = vmap(jacrev(lambda xi: model(xi[None])[0]))(x)  # (B, D, D)
    s = model(x)
    vjv = torch.einsum("mbi,bij,mbj->mb", v, jac, v).mean(0)
    second = 0.5 * s.square().sum(1) if variance_reduced else 0.5 * (
        torch.einsum("mbi,bi->mb", v, s).square().mean(0))  # fmt: skip
    got = ssm(model, x, n_projections=m, projection=projection,
              variance_reduced=variance_reduced, generator=gen(9), reduction="none")  # fmt: skip
    torch.testing.assert_close(got, vjv + second, rtol=1e-12, atol=1e-12)


def test_projection_laws():
    x = torch.zeros(2000, 5, dtype=F64)
    for kind in PROJECTIONS:
        v = projections(1, x, kind, generator=gen(11))[0]
        second = v.T @ v / v.shape[0]  # E[vvᵀ] = I within sampling error (entries' sd ≈ 1/√n)
        torch.testing.assert_close(second, torch.eye(5, dtype=F64), rtol=0, atol=0.12)
    rad = projections(4, x, "rademacher", generator=gen(12))
    assert set(rad.unique().tolist()) == {-1.0, 1.0}
    sph = projections(4, x, "sphere", generator=gen(13))
    torch.testing.assert_close(sph.square().sum(-1), torch.full((4, 2000), 5.0, dtype=F64))


def test_ssm_vr_exact_cases():
    x = torch.randn(32, 4, generator=gen(14), dtype=F64)
    # Diagonal Jacobian + Rademacher: vᵀJv = Σ J_ii v_i² = tr J for every single draw.
    diag_score = lambda x: -torch.tanh(1.3 * x) + 0.2 * x.square()  # noqa: E731
    exact = ism(diag_score, x, reduction="none")
    got = ssm(diag_score, x, projection="rademacher", variance_reduced=True, generator=gen(15),
              reduction="none")  # fmt: skip
    torch.testing.assert_close(got, exact, rtol=1e-12, atol=1e-12)
    # Isotropic Jacobian cI + sphere of radius √D: vᵀJv = c‖v‖² = cD = tr J for every draw.
    iso = linear_score(-0.7 * torch.eye(4, dtype=F64), torch.arange(4.0, dtype=F64))
    got = ssm(iso, x, projection="sphere", variance_reduced=True, generator=gen(16),
              reduction="none")  # fmt: skip
    torch.testing.assert_close(got, ism(iso, x, reduction="none"), rtol=1e-12, atol=1e-12)
    # ...but not for Gaussian directions (their norm varies): the exactness above is not vacuous.
    got = ssm(iso, x, projection="gaussian", variance_reduced=True, generator=gen(16),
              reduction="none")  # fmt: skip
    assert (got - ism(iso, x, reduction="none")).abs().max() > 0.1


# ------------------------------------------------------------------------------------------------
# DSM
# ------------------------------------------------------------------------------------------------
def test_dsm_matches_formula_with_given_noise():
    model = MLP(2, seed=9)
    x = torch.randn(20, 2, generator=gen(17), dtype=F64)
    eps = torch.randn(20, 2, generator=gen(18), dtype=F64)
    for sigma in (0.3, torch.linspace(0.1, 2.0, 20, dtype=F64)):
        sig = torch.as_tensor(sigma, dtype=F64).reshape(-1, 1)
        x_noisy = x + sig * eps
        expected = 0.5 * (model(x_noisy) - (x - x_noisy) / sig**2).square().sum(1)
        got = dsm(model, x, sigma, noise=eps, reduction="none")
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.2, 1.0])
def test_dsm_minus_perturbed_esm_constant_in_theta(sigma):
    mix = mixture()
    n = 20000
    x = mix.sample(n, generator=gen(19))
    eps = torch.randn(n, 2, generator=gen(20), dtype=F64)
    x_noisy = x + sigma * eps
    perturbed = mix.perturbed(1.0, sigma)
    diffs, esms = [], []
    for k in range(3):
        model = MLP(2, seed=20 + k, scale=1.0 + k)
        with torch.no_grad():
            d = dsm(model, x, sigma, noise=eps, reduction="none")
            e = esm(model, x_noisy, perturbed.score, reduction="none")
        diffs.append(d - e)
        esms.append(e)
    for k in (1, 2):
        assert z_score(diffs[k] - diffs[0]) < Z
        assert z_score(esms[k] - esms[0]) > 30


def test_same_seed_same_value_and_different_seed_different_value():
    model = MLP(3, seed=10)
    x = torch.randn(8, 3, generator=gen(21), dtype=F64)
    for kind in PROJECTIONS:
        a = ssm(model, x, n_projections=2, projection=kind, generator=gen(1))
        b = ssm(model, x, n_projections=2, projection=kind, generator=gen(1))
        c = ssm(model, x, n_projections=2, projection=kind, generator=gen(2))
        assert torch.equal(a, b) and not torch.equal(a, c)
    a, b, c = (dsm(model, x, 0.5, generator=gen(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------------------------------------
# Image-shaped inputs
# ------------------------------------------------------------------------------------------------
def test_image_shaped_inputs_all_objectives():
    b, c, h, w = 6, 2, 3, 4
    x = torch.randn(b, c, h, w, generator=gen(22), dtype=F64)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        conv = nn.Conv2d(c, c, 3, padding=1).to(F64)
        # GroupNorm is per sample; its double backward defeats autograd's legacy batched grads.
        net = nn.Sequential(
            nn.Conv2d(c, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.SiLU(),
            nn.Conv2d(4, c, 3, padding=1),
        )  # fmt: skip
    # A linear conv with zero padding: every diagonal Jacobian entry of channel k is the centre tap.
    trace = h * w * sum(conv.weight[k, k, 1, 1] for k in range(c))
    s = conv(x)
    expected = trace + 0.5 * s.square().sum((1, 2, 3))
    torch.testing.assert_close(ism(conv, x, reduction="none"), expected.expand(b))
    for mode in ("batch", "samples"):
        got = ism(conv, x, reduction="none", chunk_size=5, vectorize=mode)
        torch.testing.assert_close(got, expected.expand(b))
    # A non-linear conv score against the brute-force loop.
    net = net.to(F64)
    s = net(x)
    expected = brute_trace(net, x) + 0.5 * s.square().sum((1, 2, 3))
    for mode in ("batch", "samples"):
        torch.testing.assert_close(ism(net, x, reduction="none", vectorize=mode), expected)
    # SSM: the exact formula with the drawn directions, in image shape.
    v = projections(2, x, "gaussian", generator=gen(23))
    jtv = torch.stack([torch.autograd.functional.vjp(net, x, vi)[1] for vi in v])
    vjv = (jtv * v).sum((2, 3, 4)).mean(0)
    half = 0.5 * (v * s).sum((2, 3, 4)).square().mean(0)
    got = ssm(net, x, n_projections=2, generator=gen(23), reduction="none")
    torch.testing.assert_close(got, vjv + half)
    vr = ssm(net, x, n_projections=2, variance_reduced=True, generator=gen(23), reduction="sum")
    torch.testing.assert_close(vr, (vjv + 0.5 * s.square().sum((1, 2, 3))).sum())
    # ESM and DSM.
    target = torch.randn(x.shape, generator=gen(24), dtype=F64)
    torch.testing.assert_close(
        esm(net, x, target, reduction="none"), 0.5 * (s - target).square().sum((1, 2, 3))
    )
    eps = torch.randn(x.shape, generator=gen(25), dtype=F64)
    sig = torch.linspace(0.5, 1.0, b, dtype=F64)
    resid = net(x + sig[:, None, None, None] * eps) + eps / sig[:, None, None, None]
    got = dsm(net, x, sig, noise=eps, reduction="none")
    torch.testing.assert_close(got, 0.5 * resid.square().sum((1, 2, 3)))


def test_reductions():
    model = MLP(2, seed=11)
    x = torch.randn(7, 2, generator=gen(26), dtype=F64)
    for fn in (
        lambda r: esm(model, x, torch.zeros_like(x), reduction=r),
        lambda r: ism(model, x, reduction=r),
        lambda r: ssm(model, x, generator=gen(0), reduction=r),
        lambda r: dsm(model, x, 0.5, generator=gen(0), reduction=r),
    ):
        none = fn("none")
        assert none.shape == (7,)
        torch.testing.assert_close(fn("mean"), none.mean())
        torch.testing.assert_close(fn("sum"), none.sum())


def test_float32_and_training_gradients_reach_parameters():
    model = MLP(2, seed=12).float()
    x = torch.randn(16, 2, generator=gen(27))
    for loss in (
        esm(model, x, -x),
        ism(model, x),
        ssm(model, x, generator=gen(0)),
        ssm(model, x, variance_reduced=True, generator=gen(0)),
        dsm(model, x, 0.1, generator=gen(0)),
    ):
        assert loss.dtype == torch.float32
        grads = torch.autograd.grad(loss, list(model.parameters()))
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_evaluation_under_no_grad_and_inference_mode():
    model = MLP(3, seed=14)
    x = torch.randn(6, 3, generator=gen(28), dtype=F64)
    losses = {
        "esm": lambda: esm(model, x, -x),
        "ism": lambda: ism(model, x),
        "ism-samples": lambda: ism(model, x, vectorize="samples"),
        "ssm": lambda: ssm(model, x, n_projections=2, generator=gen(1)),
        "ssm-vr": lambda: ssm(model, x, variance_reduced=True, generator=gen(1)),
        "dsm": lambda: dsm(model, x, 0.5, generator=gen(1)),
    }
    for name, fn in losses.items():
        expected = fn().detach()
        with torch.no_grad():
            got = fn()
        assert not got.requires_grad, name
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        with torch.inference_mode():
            got = fn()
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------
def test_bad_input_raises_clear_value_error():
    model = MLP(2, seed=13)
    x = torch.randn(5, 2, dtype=F64)
    bad = x.clone()
    bad[1, 0] = float("nan")
    objectives = {
        "esm": lambda f, x, **k: esm(f, x, torch.zeros_like(x), **k),
        "ism": ism,
        "ssm": ssm,
        "dsm": lambda f, x, **k: dsm(f, x, 0.5, **k),
    }
    for name, obj in objectives.items():
        with pytest.raises(ValueError, match="at least 2 dimensions"):
            obj(model, torch.zeros(5, dtype=F64))
        with pytest.raises(ValueError, match="NaN or infinite"):
            obj(model, bad)
        with pytest.raises(ValueError, match="reduction"):
            obj(model, x, reduction="avg")
        with pytest.raises(ValueError, match=r"x's shape \(5, 2\)"):
            obj(lambda x: x[:, :1], x)
        with pytest.raises(ValueError, match="floating-point"):
            obj(model, torch.ones(5, 2, dtype=torch.long))
        assert name  # keeps the loop variable used for readable failures
    with pytest.raises(ValueError, match="target_score"):
        esm(model, x, torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match="target_score contains NaN"):
        esm(model, x, bad)
    for sigma in (0.0, -1.0, float("nan"), float("inf"), torch.tensor([0.5, 0.5, 0.0, 1.0, 1.0])):
        with pytest.raises(ValueError, match="sigma must be positive"):
            dsm(model, x, sigma)
    with pytest.raises(ValueError, match="sigma must be a scalar or have shape"):
        dsm(model, x, torch.ones(3))
    with pytest.raises(ValueError, match="noise must have x's shape"):
        dsm(model, x, 0.5, noise=torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match="noise contains NaN"):
        dsm(model, x, 0.5, noise=bad)
    for n in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n_projections must be a positive integer"):
            ssm(model, x, n_projections=n)
    with pytest.raises(ValueError, match="projection must be one of"):
        ssm(model, x, projection="uniform")
    for chunk in (0, -1, 2.5):
        with pytest.raises(ValueError, match="chunk_size"):
            ism(model, x, chunk_size=chunk)
    with pytest.raises(ValueError, match="vectorize must be one of"):
        ism(model, x, vectorize="loop")


# ------------------------------------------------------------------------------------------------
# Training drives the Fisher divergence down
# ------------------------------------------------------------------------------------------------
def fisher(score_fn, x, true) -> float:
    with torch.no_grad():
        return float(esm(score_fn, x, true))


def gaussian_fit_fisher(mix: GaussianMixture, x, true) -> float:
    prec = torch.linalg.inv(mix.covariance())
    mean = mix.mean()
    return fisher(lambda y: -(y - mean) @ prec, x, true)


def train(model, loss_fn, steps: int, lr: float, seed: int, batch: int = 256):
    mix = mixture()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = gen(seed)
    for _ in range(steps):
        x = mix.sample(batch, generator=g)
        opt.zero_grad(set_to_none=True)
        loss_fn(model, x, g).backward()
        opt.step()
        sched.step()
    return model


# name: (loss, batch).  DSM's regression target −ε/σ has variance D/σ², so at σ = 0.1 it needs
# more samples per step; it is also the cheapest objective per sample.
TRAINERS = {
    "esm": (lambda m, x, g: esm(m, x, mixture().score), 256),
    "ism": (lambda m, x, g: ism(m, x), 256),
    "ssm": (lambda m, x, g: ssm(m, x, n_projections=2, generator=g), 256),
    "ssm-vr": (lambda m, x, g: ssm(m, x, variance_reduced=True, generator=g), 256),
    "dsm": (lambda m, x, g: dsm(m, x, 0.1, generator=g), 1024),
}


@pytest.fixture(scope="module")
def held_out():
    mix = mixture()
    x = mix.sample(4000, generator=gen(99))
    true = mix.score(x)
    # References: the zero score and the best single Gaussian (mixture mean and covariance).
    zero = fisher(torch.zeros_like, x, true)
    gauss = gaussian_fit_fisher(mix, x, true)
    # The DSM(σ=0.1) minimiser is the perturbed score: its own Fisher divergence is a floor.
    dsm_floor = fisher(mix.perturbed(1.0, 0.1).score, x, true)
    assert gauss < zero and dsm_floor < 0.01 * gauss
    return x, true, gauss


@pytest.mark.parametrize("name", list(TRAINERS))
def test_training_each_objective_lowers_fisher_divergence(name, held_out):
    x, true, gauss = held_out
    model = MLP(2, width=32, seed=30)
    loss, batch = TRAINERS[name]
    train(model, loss, steps=250, lr=2e-2, seed=31, batch=batch)
    after = fisher(model, x, true)
    # The best Gaussian fit scores 2.9 (the zero score 3.4, the exact score 0): reaching a fifth
    # of it needs the multimodal shape.  Measured: 0.07 (ESM) to 0.29 (DSM), so a 2× margin.
    assert after < 0.2 * gauss, (name, after, gauss)


class Energy(nn.Module):
    """A tiny energy network E: R² → R (SiLU, then softplus)."""

    def __init__(self, seed: int, width: int = 32):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Linear(2, width), nn.SiLU(), nn.Linear(width, width), nn.Softplus(),
                nn.Linear(width, 1),
            ).to(F64)  # fmt: skip

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("name", ["ism", "ssm-vr"])
def test_training_energy_model_lowers_fisher_divergence(name, held_out):
    x, true, gauss = held_out
    model = EnergyScore(Energy(seed=32))
    loss, batch = TRAINERS[name]
    train(model, loss, steps=250, lr=2e-2, seed=33, batch=batch)
    after = fisher(model, x, true)
    assert after < 0.2 * gauss, (name, after, gauss)
