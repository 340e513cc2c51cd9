"""The analytic oracles (Gaussian, GaussianMixture, MixtureScoreModel) against scipy and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from scorematch import EDM, VE, VP, Gaussian, GaussianMixture, SubVP

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_spd(d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    a = torch.randn(d, d, generator=gen(seed), dtype=F64)
    return scale * (a @ a.T / d + 0.2 * torch.eye(d, dtype=F64))


def make_mixture(d: int, k: int = 3, seed: int = 0, dtype=F64) -> GaussianMixture:
    means = 2.0 * torch.randn(k, d, generator=gen(seed), dtype=F64)
    covs = torch.stack([random_spd(d, seed + 10 + i) for i in range(k)])
    weights = torch.rand(k, generator=gen(seed + 99), dtype=F64) + 0.2
    return GaussianMixture(means, covs, weights, dtype=dtype)


def scipy_log_prob(mix: GaussianMixture, x: np.ndarray) -> np.ndarray:
    comps = [
        np.log(float(w)) + scipy.stats.multivariate_normal(m.numpy(), c.numpy()).logpdf(x)
        for w, m, c in zip(mix.weights.double(), mix.means.double(), mix.covs.double())
    ]
    return scipy.special.logsumexp(np.stack(comps, -1).reshape(len(x), -1), axis=-1)


def sample_cov(x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(0)
    return xc.T @ xc / (x.shape[0] - 1)


# -- densities and scores -----------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 5])
def test_log_prob_matches_scipy(d):
    mix = make_mixture(d)
    x = 1.5 * torch.randn(64, d, generator=gen(1), dtype=F64)
    ref = scipy_log_prob(mix, x.numpy())
    np.testing.assert_allclose(mix.log_prob(x).numpy(), ref, rtol=1e-11, atol=1e-11)
    # float32 parameters and inputs: relative error of a few float32 ulps on log p
    mix32 = make_mixture(d, dtype=torch.float32)
    lp32 = mix32.log_prob(x.float())
    assert lp32.dtype == torch.float32
    np.testing.assert_allclose(lp32.double().numpy(), ref, rtol=2e-5, atol=2e-5)
    # component_log_prob and responsibilities
    comp = mix.component_log_prob(x)
    assert comp.shape == (64, 3)
    r = mix.responsibilities(x)
    np.testing.assert_allclose(r.sum(1).numpy(), 1.0, rtol=1e-13)
    g = Gaussian(mix.means[1], mix.covs[1])
    ref1 = scipy.stats.multivariate_normal(mix.means[1].numpy(), mix.covs[1].numpy()).logpdf(x)
    np.testing.assert_allclose(g.log_prob(x).numpy(), np.reshape(ref1, -1), rtol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_score_is_the_gradient_of_log_prob(dtype):
    mix = make_mixture(3, dtype=dtype)
    x = (1.5 * torch.randn(32, 3, generator=gen(2), dtype=F64)).to(dtype).requires_grad_()
    (grad,) = torch.autograd.grad(mix.log_prob(x).sum(), x)
    score = mix.score(x.detach())
    assert score.dtype == dtype
    tol = 1e-12 if dtype == F64 else 1e-4
    torch.testing.assert_close(score, grad, rtol=tol, atol=tol)


def test_ill_conditioned_covariance_matches_scipy():
    # cond(Σ) = 1e8 with a random rotation; points drawn from the law itself.
    d = 4
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(3), dtype=F64))
    cov = q @ torch.diag(torch.tensor([1.0, 1e-3, 1e-5, 1e-8], dtype=F64)) @ q.T
    cov = 0.5 * (cov + cov.T)
    mean = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=F64)
    g = Gaussian(mean, cov)
    x = g.sample(200, generator=gen(4))
    ref = scipy.stats.multivariate_normal(mean.numpy(), cov.numpy()).logpdf(x.numpy())
    np.testing.assert_allclose(g.log_prob(x).numpy(), ref, rtol=1e-7)
    # score along the stiff direction: −Σ⁻¹(x − μ), solved independently
    ref_score = -torch.linalg.solve(cov, (x - mean).T).T
    torch.testing.assert_close(g.score(x), ref_score, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_far_from_the_modes_score_follows_the_dominant_component(dtype):
    mix = make_mixture(2, dtype=dtype)
    dirs = torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.6, 0.8], [-0.7, -0.7]], dtype=dtype)
    x = 1e3 * dirs
    lp = mix.log_prob(x)
    s = mix.score(x)
    assert torch.isfinite(lp).all() and torch.isfinite(s).all()
    k = mix.component_log_prob(x).argmax(1)
    diff = (x - mix.means[k]).double()
    expect = -torch.linalg.solve(mix.covs[k].double(), diff.unsqueeze(-1)).squeeze(-1)
    tol = 1e-9 if dtype == F64 else 1e-4
    torch.testing.assert_close(s.double(), expect, rtol=tol, atol=0.0)
    # log p is the dominant component's (the others are e^{-10^5} smaller)
    torch.testing.assert_close(lp.double(), mix.component_log_prob(x).max(1).values.double())


# -- sampling -----------------------------------------------------------------------------------


def test_sample_moments_match_mean_and_covariance_methods():
    mix = make_mixture(2, k=3)
    n = 100_000
    x = mix.sample(n, generator=gen(5))
    m, c = mix.mean(), mix.covariance()
    # the methods against their definitions
    w, mu, cov = mix.weights, mix.means, mix.covs
    torch.testing.assert_close(m, (w[:, None] * mu).sum(0))
    second = sum(w[i] * (cov[i] + torch.outer(mu[i], mu[i])) for i in range(3))
    torch.testing.assert_close(c, second - torch.outer(m, m))
    # sample mean: 5 standard errors per coordinate
    assert ((x.mean(0) - m).abs() < 5 * (c.diagonal() / n).sqrt()).all()
    # sample covariance: standard error of each entry from the spread of the centred products
    xc = x - m
    prod = xc[:, :, None] * xc[:, None, :]
    se = prod.std(0) / n**0.5
    assert ((sample_cov(x) - c).abs() < 5 * se).all()
    # mode frequencies
    counts = torch.bincount(mix.component_log_prob(x).argmax(1), minlength=3)
    assert counts.sum() == n


def test_same_generator_same_samples():
    mix = make_mixture(3)
    a = mix.sample(10, generator=gen(7))
    b = mix.sample(10, generator=gen(7))
    c = mix.sample(10, generator=gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert mix.sample(5).shape == (5, 3)
    assert make_mixture(3, dtype=torch.float32).sample(4, generator=gen(0)).dtype == torch.float32


# -- the noised law -----------------------------------------------------------------------------


def test_perturbed_is_the_law_of_alpha_x_plus_sigma_eps():
    mix = make_mixture(2)
    alpha, sigma = 0.6, 0.8
    p = mix.perturbed(alpha, sigma)
    # closed-form components: N(αμ_k, α²Σ_k + σ²I)
    torch.testing.assert_close(p.means, alpha * mix.means)
    torch.testing.assert_close(p.covs, alpha**2 * mix.covs + sigma**2 * torch.eye(2, dtype=F64))
    torch.testing.assert_close(p.weights, mix.weights)
    # transformed samples have the perturbed law's moments (5 standard errors)
    n = 100_000
    x0 = mix.sample(n, generator=gen(9))
    xt = alpha * x0 + sigma * torch.randn(n, 2, generator=gen(10), dtype=F64)
    c = p.covariance()
    assert ((xt.mean(0) - p.mean()).abs() < 5 * (c.diagonal() / n).sqrt()).all()
    se = ((xt - p.mean())[:, :, None] * (xt - p.mean())[:, None, :]).std(0) / n**0.5
    assert ((sample_cov(xt) - c).abs() < 5 * se).all()
    # its density equals scipy on the closed-form components, and the per-sample noised methods
    x = torch.randn(20, 2, generator=gen(11), dtype=F64)
    np.testing.assert_allclose(p.log_prob(x).numpy(), scipy_log_prob(p, x.numpy()), rtol=1e-11)
    a = torch.full((20,), alpha, dtype=F64)
    s = torch.full((20,), sigma, dtype=F64)
    torch.testing.assert_close(mix.noised_log_prob(x, a, s), p.log_prob(x))
    torch.testing.assert_close(mix.noised_score(x, a, s), p.score(x))
    # α = 0 gives N(0, σ²I) whatever the mixture
    z = mix.perturbed(0.0, 2.0)
    ref = scipy.stats.multivariate_normal(np.zeros(2), 4 * np.eye(2)).logpdf(x.numpy())
    np.testing.assert_allclose(z.log_prob(x).numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("kind", ["number", "vector", "matrix"])
def test_affine_is_the_law_of_a_x_plus_b(kind):
    """y = Ax + b: components N(Aμ + b, AΣAᵀ); log q(y) = log p(x) − log|det A| and
    ∇_y log q(y) = A^{−T} ∇ₓ log p(x), against scipy and the change of variables."""
    mix = make_mixture(3)
    scale = {
        "number": torch.tensor(-1.7, dtype=F64),
        "vector": torch.tensor([0.5, -2.0, 3.0], dtype=F64),
        "matrix": torch.tensor([[1.0, 0.4, 0.0], [-0.3, 2.0, 0.5], [0.2, 0.0, 0.7]], dtype=F64),
    }[kind]
    a = scale * torch.eye(3, dtype=F64) if scale.ndim == 0 else torch.diag_embed(scale) if scale.ndim == 1 else scale  # fmt: skip
    b = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    q = mix.affine(scale, b)
    torch.testing.assert_close(q.means, mix.means @ a.T + b)
    torch.testing.assert_close(q.covs, a @ mix.covs @ a.T)
    torch.testing.assert_close(q.weights, mix.weights)
    x = mix.sample(50, generator=gen(3))
    y = x @ a.T + b
    log_det = float(torch.linalg.slogdet(a).logabsdet)
    torch.testing.assert_close(q.log_prob(y), mix.log_prob(x) - log_det)
    np.testing.assert_allclose(q.log_prob(y).numpy(), scipy_log_prob(q, y.numpy()), rtol=1e-11)
    torch.testing.assert_close(q.score(y), mix.score(x) @ torch.linalg.inv(a))
    torch.testing.assert_close(q.mean(), a @ mix.mean() + b)
    torch.testing.assert_close(q.covariance(), a @ mix.covariance() @ a.T)
    # the eigendecomposition behind perturbed() is the mapped covariance's
    torch.testing.assert_close(q.perturbed(0.5, 0.3).covs, 0.25 * q.covs + 0.09 * torch.eye(3, dtype=F64))  # fmt: skip


def test_affine_keeps_the_class_and_checks_its_arguments():
    g = Gaussian([0.0, 1.0], [1.0, 4.0]).affine([2.0, 0.5], [1.0, 1.0])
    assert isinstance(g, Gaussian)
    torch.testing.assert_close(g.mean_vector, torch.tensor([1.0, 1.5]))
    torch.testing.assert_close(g.cov, torch.diag(torch.tensor([4.0, 1.0])))
    mix = make_mixture(2)
    with pytest.raises(ValueError, match="invertible"):
        mix.affine([1.0, 0.0])
    with pytest.raises(ValueError, match="scale must be"):
        mix.affine(torch.ones(3))
    with pytest.raises(ValueError, match="shift must be"):
        mix.affine(1.0, torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        mix.affine(float("nan"))


def _posterior_mean(mix, x, alpha, sigma):
    """E[x₀ | αx₀ + σε = x], per sample, by the Gaussian conditioning formula (numpy, float64)."""
    out = []
    for xi, a, s in zip(x.numpy(), alpha.numpy(), sigma.numpy()):
        logw, cond = [], []
        for w, m, c in zip(mix.weights.numpy(), mix.means.numpy(), mix.covs.numpy()):
            ct = a * a * c + s * s * np.eye(len(m))
            logw.append(np.log(w) + scipy.stats.multivariate_normal(a * m, ct).logpdf(xi))
            cond.append(m + a * c @ np.linalg.solve(ct, xi - a * m))
        r = np.exp(np.array(logw) - scipy.special.logsumexp(logw))
        out.append(r @ np.array(cond))
    return np.array(out)


@pytest.mark.parametrize("process", [VE(), VP(), SubVP(), EDM()], ids=lambda p: type(p).__name__)
def test_score_model_is_exact_at_every_time(process):
    mix = make_mixture(2)
    model = mix.score_model(process)
    n = 12
    t = torch.linspace(process.t_min, process.t_max, n, dtype=F64)
    t = t[torch.randperm(n, generator=gen(12))]  # per-sample times, in no particular order
    alpha, sigma = process.marginal(t)
    x = alpha[:, None] * mix.sample(n, generator=gen(13)) + sigma[:, None] * torch.randn(
        n, 2, generator=gen(14), dtype=F64
    )
    s = model(x, t)
    lp = model.log_prob(x, t)
    for i in range(n):
        p = mix.perturbed(float(alpha[i]), float(sigma[i]))
        torch.testing.assert_close(s[i], p.score(x[i : i + 1])[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(lp[i], p.log_prob(x[i : i + 1])[0], rtol=1e-12, atol=1e-12)
    # Tweedie's denoiser equals the Gaussian-conditioning posterior mean
    np.testing.assert_allclose(
        model.denoise(x, t).numpy(), _posterior_mean(mix, x, alpha, sigma), rtol=1e-8, atol=1e-8
    )
    # log_prob and score agree (autograd) and a scalar t broadcasts
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(model.log_prob(xg, t).sum(), xg)
    torch.testing.assert_close(g, s, rtol=1e-9, atol=1e-12)
    t0 = t[0]
    torch.testing.assert_close(model(x, t0), model(x, t0.expand(n)))
    # float32 input works and keeps its dtype
    assert model(x.float(), t.float()).dtype == torch.float32


# -- construction and validation ----------------------------------------------------------------


def test_construction_variants():
    g = Gaussian(torch.tensor([1.0, 2.0]), torch.tensor([4.0, 9.0]))  # diagonal given as a vector
    torch.testing.assert_close(g.cov, torch.diag(torch.tensor([4.0, 9.0])))
    torch.testing.assert_close(g.mean_vector, torch.tensor([1.0, 2.0]))
    assert g.dim == 2 and g.n_components == 1 and g.dtype == torch.float32
    m = GaussianMixture([[0, 0], [1, 1]], [[1, 1], [2, 2]], [1, 3])  # ints, diagonals, unnormalised
    assert m.dtype == torch.float32
    torch.testing.assert_close(m.weights, torch.tensor([0.25, 0.75]))
    m64 = m.to(dtype=F64)
    assert m64.dtype == F64 and m64.sample(3, generator=gen(0)).dtype == F64
    assert m.dtype == torch.float32  # .to returns a copy


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(2), torch.eye(2)[None]), "means must have shape"),
        ((torch.zeros(2, 2), torch.ones(2, 3, 3)), "covs must have shape"),
        ((torch.zeros(1, 2), torch.tensor([[[1.0, 2.0], [2.0, 1.0]]])), "positive definite"),
        ((torch.zeros(1, 2), torch.tensor([[[1.0, 0.5], [0.0, 1.0]]])), "symmetric"),
        ((torch.zeros(2, 1), torch.ones(2, 1, 1), torch.tensor([1.0, -0.5])), "non-negative"),
        ((torch.zeros(2, 1), torch.ones(2, 1, 1), torch.tensor([1.0])), "weights must have shape"),
        ((torch.zeros(2, 1), torch.ones(2, 1, 1), torch.zeros(2)), "not all zero"),
        ((torch.full((1, 1), float("nan")), torch.ones(1, 1, 1)), "finite"),
    ],
)
def test_constructor_validation(args, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(*args)


def test_call_validation():
    mix = make_mixture(2)
    with pytest.raises(ValueError, match="shape"):
        mix.log_prob(torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        mix.score(torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="n must be"):
        mix.sample(0)
    with pytest.raises(ValueError, match="sigma"):
        mix.perturbed(1.0, -0.1)
    with pytest.raises(ValueError, match="singular"):
        mix.perturbed(0.0, 0.0)
    with pytest.raises(ValueError, match="mean must have shape"):
        Gaussian(torch.zeros(2, 2), torch.eye(2))
    with pytest.raises(ValueError, match="t must be"):
        mix.score_model(VE())(torch.zeros(3, 2, dtype=F64), torch.zeros(2, dtype=F64))
