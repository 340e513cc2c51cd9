"""Sample distances and the mixture measure against exact oracles (closed forms, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.spatial.distance
import scipy.stats
import torch

import scorematch.metrics.distances as distances
from scorematch import GaussianMixture
from scorematch.metrics import (
    bures_wasserstein,
    energy_distance,
    frechet_distance,
    heldout_nll,
    mixture_error,
    mmd,
    sliced_wasserstein,
)
from scorematch.metrics.mixture import mixture_figures

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed: int, dtype=F64) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def random_spd(d: int, seed: int) -> torch.Tensor:
    a = randn(d, d, seed=seed)
    return a @ a.T + 0.1 * torch.eye(d, dtype=F64)


# -- sliced Wasserstein -------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_sw_of_a_shift_matches_the_sphere_average(p):
    # y = x + δ: every 1-D projection is a pure shift, so W_p(θ) = |θᵀδ| exactly and
    # SW_p^p = E|θᵀδ|^p over the sphere: ‖δ‖²/D for p=2, ‖δ‖ Γ(D/2)/(√π Γ((D+1)/2)) for p=1.
    d, proj = 5, 5000
    x = randn(300, 1, d, seed=0)  # event shape (1, D) is flattened
    delta = torch.tensor([0.7, -0.2, 0.0, 1.1, 0.4], dtype=F64)
    y = x + delta
    sw = sliced_wasserstein(x, y, projections=proj, p=p, generator=gen(1))
    # Moments of u = θ₁² ~ Beta(1/2, (D-1)/2) give the Monte Carlo standard error of the mean.
    norm = float(delta.norm())
    if p == 2:
        exact = norm**2 / d
        sd = norm**2 * math.sqrt(2 * (d - 1) / (d**2 * (d + 2)))
    else:
        exact = norm * math.gamma(d / 2) / (math.sqrt(math.pi) * math.gamma((d + 1) / 2))
        sd = norm * math.sqrt(1 / d - (exact / norm) ** 2)
    assert abs(float(sw) ** p - exact) < 5 * sd / math.sqrt(proj)


def test_sw_in_1d_is_the_exact_empirical_wasserstein_for_unequal_sizes():
    x = randn(37, 1, seed=2)
    y = 0.5 + 2 * randn(101, 1, seed=3)
    # D = 1: directions are ±1, so SW_p is W_p between the empirical laws.
    w1 = sliced_wasserstein(x, y, projections=3, p=1, generator=gen(0))
    assert float(w1) == pytest.approx(scipy.stats.wasserstein_distance(x[:, 0], y[:, 0]), rel=1e-12)
    # W_2 oracle: replicate each x point M times and each y point N times (equal masses), then
    # the optimal coupling of two equal-size sets matches sorted order.
    xs = np.sort(np.repeat(x[:, 0].numpy(), 101))
    ys = np.sort(np.repeat(y[:, 0].numpy(), 37))
    w2 = sliced_wasserstein(x, y, projections=3, p=2, generator=gen(0))
    assert float(w2) == pytest.approx(math.sqrt(np.mean((xs - ys) ** 2)), rel=1e-12)
    # Equal sizes take the direct path; same oracle.
    w2_eq = sliced_wasserstein(x, y[:37], projections=1, generator=gen(0))
    ref = np.sqrt(np.mean((np.sort(x[:, 0].numpy()) - np.sort(y[:37, 0].numpy())) ** 2))
    assert float(w2_eq) == pytest.approx(ref, rel=1e-12)


def test_sw_same_law_is_small_and_reproducible():
    x, y = randn(2000, 2, seed=4), randn(2000, 2, seed=5)
    a = sliced_wasserstein(x, y, generator=gen(7))
    b = sliced_wasserstein(x, y, generator=gen(7))
    assert float(a) == float(b)
    # Measured over 20 seeds at n=1000: 0.076 ± 0.012 for the same law; a 0.5 shift gives ≈ 0.35.
    shifted = sliced_wasserstein(x, y + torch.tensor([0.5, 0.0], dtype=F64), generator=gen(7))
    assert float(a) < 0.12 < 0.3 < float(shifted)
    # float32, differentiable
    x32 = x.float().requires_grad_()
    out = sliced_wasserstein(x32, y.float(), generator=gen(7))
    assert out.dtype == torch.float32
    out.backward()
    assert torch.isfinite(x32.grad).all()


def test_sw_validation():
    x = randn(10, 3, seed=0)
    with pytest.raises(ValueError, match="features"):
        sliced_wasserstein(x, randn(10, 2, seed=0))
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein(x, x, projections=0)
    with pytest.raises(ValueError, match="p must"):
        sliced_wasserstein(x, x, p=0.5)
    with pytest.raises(ValueError, match="NaN"):
        sliced_wasserstein(x, torch.full((4, 3), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        sliced_wasserstein(x[0], x)


# -- MMD ----------------------------------------------------------------------------------------


def _gauss_rbf_mean(cov: torch.Tensor, delta: torch.Tensor, h: float) -> float:
    # E exp(−‖Z‖²/(2h²)), Z ~ N(δ, S):  det(I + S/h²)^{-½} exp(−½ δᵀ(h²I + S)^{-1} δ)
    eye = torch.eye(len(delta), dtype=F64)
    return float(
        torch.linalg.det(eye + cov / h**2) ** -0.5
        * torch.exp(-0.5 * delta @ torch.linalg.solve(h**2 * eye + cov, delta))
    )


def test_mmd_unbiased_matches_gaussian_closed_form():
    d, h, s = 2, 1.0, 1.3
    eye = torch.eye(d, dtype=F64)
    delta = torch.tensor([0.5, 0.0], dtype=F64)
    exact = (
        _gauss_rbf_mean(2 * eye, 0 * delta, h)
        + _gauss_rbf_mean(2 * s**2 * eye, 0 * delta, h)
        - 2 * _gauss_rbf_mean((1 + s**2) * eye, delta, h)
    )
    vals = []
    for seed in range(6):
        x = randn(1000, d, seed=10 + seed)
        y = delta + s * randn(1000, d, seed=100 + seed)
        vals.append(float(mmd(x, y, bandwidth=h)))
    # The U-statistic is unbiased; its spread at n=1000 measured over 20 seeds is 0.0047.
    assert abs(np.mean(vals) - exact) < 4 * 0.0047 / math.sqrt(len(vals))
    # Same law: expectation 0, measured spread 5e-4 at n=1000.
    x, y = randn(1000, d, seed=1), randn(1000, d, seed=2)
    assert abs(float(mmd(x, y, bandwidth=h))) < 2.5e-3 < exact


def _brute_mmd(x, y, h, kernel, unbiased):
    k = {
        "rbf": lambda d: np.exp(-0.5 * (d / h) ** 2),
        "laplace": lambda d: np.exp(-d / h),
        "imq": lambda d: 1 / np.sqrt(1 + (d / h) ** 2),
    }[kernel]
    cd = scipy.spatial.distance.cdist
    kxx, kyy, kxy = k(cd(x, x)), k(cd(y, y)), k(cd(x, y))
    n, m = len(x), len(y)
    if unbiased:
        return (
            (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


@pytest.mark.parametrize("kernel", ["rbf", "laplace", "imq"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_equals_brute_force_with_small_blocks(monkeypatch, kernel, unbiased):
    monkeypatch.setattr(distances, "BLOCK", 100)  # several row blocks of 1-3 rows each
    x, y = randn(40, 3, seed=0), 0.3 + randn(57, 3, seed=1)
    got = mmd(x, y, kernel=kernel, bandwidth=0.8, unbiased=unbiased)
    ref = _brute_mmd(x.numpy(), y.numpy(), 0.8, kernel, unbiased)
    assert float(got) == pytest.approx(ref, rel=1e-10, abs=1e-13)


def test_mmd_median_heuristic_and_multiscale():
    x, y = randn(50, 2, seed=0), 1.0 + randn(30, 2, seed=1)
    med = float(np.median(scipy.spatial.distance.pdist(torch.cat([x, y]).numpy())))
    assert float(mmd(x, y)) == pytest.approx(float(mmd(x, y, bandwidth=med)), rel=1e-12)
    multi = mmd(x, y, bandwidth=[0.5, 2.0])
    mean = (mmd(x, y, bandwidth=0.5) + mmd(x, y, bandwidth=2.0)) / 2
    assert float(multi) == pytest.approx(float(mean), rel=1e-12)
    assert mmd(x.float(), y.float()).dtype == torch.float32
    # differentiable (usable as a training loss), also for the distance-based energy statistic
    xg = x.clone().requires_grad_()
    (mmd(xg, y) + energy_distance(xg, y)).backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="kernel"):
        mmd(x, y, kernel="cosine")
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, y, bandwidth=[1.0, -1.0])
    with pytest.raises(ValueError, match="at least 2"):
        mmd(x[:1], y)


# -- energy distance ----------------------------------------------------------------------------


def test_energy_distance_v_statistic_equals_scipy_in_1d(monkeypatch):
    monkeypatch.setattr(distances, "BLOCK", 64)
    x, y = randn(45, 1, seed=0), 0.4 + 1.5 * randn(70, 1, seed=1)
    # scipy returns sqrt(2∫(F−G)²), which for empirical laws is the square root of the V-statistic.
    ref = scipy.stats.energy_distance(x[:, 0].numpy(), y[:, 0].numpy()) ** 2
    assert float(energy_distance(x, y, unbiased=False)) == pytest.approx(ref, rel=1e-10)


def test_energy_distance_matches_integral_for_gaussians():
    mu, s = 0.6, 1.4
    # In 1-D the energy distance is 2∫(F − G)² dx (Székely & Rizzo 2013, Prop. 1).
    exact = (
        2
        * scipy.integrate.quad(
            lambda t: (scipy.stats.norm.cdf(t) - scipy.stats.norm.cdf(t, mu, s)) ** 2,
            -np.inf,
            np.inf,
        )[0]
    )
    # Deterministic "samples" at the quantiles (i − ½)/n: their empirical CDFs are within 1/(2n)
    # of F and G, so the V-statistic 2∫(F_n − G_n)² is exact up to O(1/n).
    u = (np.arange(1, 2001) - 0.5) / 2000
    x = torch.tensor(scipy.stats.norm.ppf(u))[:, None]
    y = torch.tensor(scipy.stats.norm.ppf(u, mu, s))[:, None]
    assert float(energy_distance(x, y, unbiased=False)) == pytest.approx(exact, rel=1e-4)
    # Same law, random samples: the U-statistic has mean 0 and (measured over 20 seeds at
    # n=1000, D=2) spread 0.0015; the V-statistic is biased upwards by E‖X−X'‖/n.
    a, b = randn(1000, 2, seed=1), randn(1000, 2, seed=2)
    assert abs(float(energy_distance(a, b))) < 0.006
    assert float(energy_distance(a, b, unbiased=False)) > float(energy_distance(a, b))


# -- Fréchet / Bures–Wasserstein ----------------------------------------------------------------


def _scipy_frechet(m1, c1, m2, c2) -> float:
    cross = scipy.linalg.sqrtm(c1 @ c2).real
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * cross))


def test_bures_wasserstein_matches_scipy_sqrtm_for_non_commuting_covariances():
    d = 4
    c1, c2 = random_spd(d, 0), random_spd(d, 1)
    assert not torch.allclose(c1 @ c2, c2 @ c1)
    m1, m2 = randn(d, seed=2), randn(d, seed=3)
    ref = _scipy_frechet(m1.numpy(), c1.numpy(), m2.numpy(), c2.numpy())
    assert float(bures_wasserstein(m1, c1, m2, c2)) ** 2 == pytest.approx(ref, rel=1e-10)
    # Symmetric, zero on equal laws, batched over leading dims.
    assert float(bures_wasserstein(m2, c2, m1, c1)) ** 2 == pytest.approx(ref, rel=1e-10)
    assert float(bures_wasserstein(m1, c1, m1, c1)) < 1e-7
    batch = bures_wasserstein(torch.stack([m1, m1]), torch.stack([c1, c1]), m2, c2)
    assert batch.shape == (2,) and float(batch[1]) ** 2 == pytest.approx(ref, rel=1e-10)


def test_bures_wasserstein_closed_forms():
    # Commuting (diagonal) covariances: Σ(√a − √b)²; 1-D: √(δ² + (s₁ − s₂)²).
    a, b = torch.tensor([1.0, 4.0, 0.25], dtype=F64), torch.tensor([9.0, 1.0, 0.25], dtype=F64)
    z = torch.zeros(3, dtype=F64)
    got = bures_wasserstein(z, torch.diag(a), z, torch.diag(b))
    assert float(got) ** 2 == pytest.approx(float(((a.sqrt() - b.sqrt()) ** 2).sum()), rel=1e-12)
    one = bures_wasserstein(
        torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-2.0]), torch.tensor([[0.25]])
    )
    assert float(one) == pytest.approx(math.sqrt(9 + 1.5**2), rel=1e-6)
    assert one.dtype == torch.float32
    # Singular covariances: N(0, e₁e₁ᵀ) vs N(0, e₂e₂ᵀ) has W2² = tr = 2 (orthogonal supports).
    e = torch.eye(2, dtype=F64)
    sing = bures_wasserstein(z[:2], e[:, :1] @ e[:1], z[:2], e[:, 1:] @ e[1:])
    assert float(sing) == pytest.approx(math.sqrt(2), rel=1e-10)
    with pytest.raises(ValueError, match="mean must be"):
        bures_wasserstein(z, torch.eye(2), z, torch.eye(3))


def _with_moments(mean, cov, n, seed):
    """n points whose sample mean and (N−1) covariance are exactly ``mean`` and ``cov``."""
    z = randn(n, len(mean), seed=seed)
    z = z - z.mean(0)
    white = torch.linalg.cholesky(z.T @ z / (n - 1))
    z = torch.linalg.solve_triangular(white, z.T, upper=False).T
    return mean + z @ torch.linalg.cholesky(cov).T


def test_frechet_distance_of_features_with_known_moments():
    d = 3
    c1, c2 = random_spd(d, 5), random_spd(d, 6)
    m1, m2 = randn(d, seed=7), randn(d, seed=8)
    x, y = _with_moments(m1, c1, 200, 0), _with_moments(m2, c2, 350, 1)
    ref = _scipy_frechet(m1.numpy(), c1.numpy(), m2.numpy(), c2.numpy())
    assert float(frechet_distance(x, y)) == pytest.approx(ref, rel=1e-9)
    assert float(frechet_distance(x, x)) < 1e-9
    assert frechet_distance(x.float(), y.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(x[:1], y)


# -- mixture_error ------------------------------------------------------------------------------


def _overlapping_mixture() -> GaussianMixture:
    # Components 1.5 apart with unit-ish scales: responsibilities blur the per-mode moments.
    means = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 2.0]], dtype=F64)
    covs = torch.stack(
        [
            torch.tensor([[1.0, 0.3], [0.3, 0.5]]),
            0.6 * torch.eye(2),
            torch.tensor([[0.4, -0.2], [-0.2, 0.8]]),
        ]
    ).to(F64)
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2], dtype=F64))


def test_mixture_error_weight_error_on_a_hand_example():
    mix = GaussianMixture(
        torch.tensor([[-1.0], [2.0]], dtype=F64),
        torch.tensor([[[1.0]], [[0.25]]], dtype=F64),
        torch.tensor([0.7, 0.3], dtype=F64),
    )
    x = torch.tensor([[-1.5], [0.0], [0.8], [2.2]], dtype=F64)
    p = np.stack(
        [0.7 * scipy.stats.norm.pdf(x[:, 0], -1, 1), 0.3 * scipy.stats.norm.pdf(x[:, 0], 2, 0.5)], 1
    )
    r = p / p.sum(1, keepdims=True)
    expected = 0.5 * np.abs(r.mean(0) - [0.7, 0.3]).sum()
    out = mixture_error(x, mix, reference_draws=2)
    assert out["weight_error"] == pytest.approx(expected, rel=1e-12)
    # With NaN rows: a spurious mode of true weight 0 holding 2 of the 6 samples.
    bad = torch.cat([x, torch.full((2, 1), float("nan"), dtype=F64)])
    out_bad = mixture_error(bad, mix, reference_draws=2)
    expected_bad = 0.5 * (np.abs(r.sum(0) / 6 - [0.7, 0.3]).sum() + 2 / 6)
    assert out_bad["weight_error"] == pytest.approx(expected_bad, rel=1e-12)
    assert out_bad["nonfinite"] == 2 and out_bad["n"] == 6
    assert out_bad["bures"] == pytest.approx(out["bures"], rel=1e-12)


def test_mixture_error_of_a_mode_left_with_one_sample_is_finite():
    # Mode 1 (at +5) keeps one sample, exactly at its mean: its covariance cannot be estimated
    # without bias, so it is the point mass's, and its Bures term is BW(δ_5, N(5, 1)) = √tr Σ = 1.
    # Mode 0's four samples have mean −5 and unbiased variance 1: its term is 0.
    mix = GaussianMixture(
        torch.tensor([[-5.0], [5.0]], dtype=F64),
        torch.ones(2, 1, 1, dtype=F64),
        torch.tensor([0.5, 0.5], dtype=F64),
    )
    a = math.sqrt(3) / 2
    x = torch.tensor([[-5 - a], [-5 + a], [-5 - a], [-5 + a], [5.0]], dtype=F64)
    out = mixture_error(x, mix, reference_draws=2)
    assert out["bures"] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0, abs=1e-6)
    assert math.isfinite(out["total"])


def test_mixture_error_of_exact_samples_is_noise_only():
    mix = _overlapping_mixture()
    n = 2000
    x = mix.sample(n, generator=gen(123))
    out = mixture_error(x, mix)
    assert out == mixture_error(x, mix)  # deterministic (seed-0 references)
    # Each mean r_k is unbiased with sd ≤ √(w_k(1 − w_k)/n); allow 4 sd per mode.
    w = mix.weights
    assert out["weight_error"] < 0.5 * float((4 * (w * (1 - w) / n).sqrt()).sum())
    # The figure of exact samples is pure finite-n noise, which the excess removes.
    assert out["bures_noise"] > 0
    assert abs(out["bures_excess"]) < 4 * out["bures_noise"]
    assert out["total"] < 0.05
    # Exact samples passed as the reference: the excess vanishes identically.
    same = mixture_error(x, mix, reference_samples=x)
    assert same["bures_excess"] == 0.0 and math.isnan(same["bures_noise"])


def test_responsibility_weighted_moments_are_consistent_despite_overlap():
    # r_k p = w_k N_k, so the r_k-weighted moments of exact samples converge to (μ_k, Σ_k) however
    # much the components overlap: the Bures figure of exact samples shrinks like n^{-1/2}.
    mix = GaussianMixture(
        torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=F64),
        torch.eye(2, dtype=F64).expand(2, 2, 2),
        torch.tensor([0.6, 0.4], dtype=F64),
    )
    small = mixture_figures(mix.sample(2000, generator=gen(0)), mix)[1]
    large = mixture_figures(mix.sample(200_000, generator=gen(0)), mix)[1]
    # Measured: 0.066 at n=2000, 0.0027 at n=200000.
    assert large < 0.01 < small / 3


def test_mixture_error_flags_wrong_samplers():
    mix = _overlapping_mixture()
    n = 2000
    exact = mixture_error(mix.sample(n, generator=gen(1)), mix)
    wrong = {
        "shifted": GaussianMixture(
            mix.means + torch.tensor([0.3, 0.0], dtype=F64), mix.covs, mix.weights
        ),
        "weights": GaussianMixture(mix.means, mix.covs, torch.tensor([0.4, 0.4, 0.2])),
        "inflated": GaussianMixture(mix.means, 1.3 * mix.covs, mix.weights),
    }
    outs = {k: mixture_error(m.sample(n, generator=gen(2)), mix) for k, m in wrong.items()}
    # Measured at n=2000: bures_noise ≈ 0.011, weight_error of exact samples ≈ 0.011.
    assert outs["shifted"]["bures_excess"] > 8 * exact["bures_noise"]
    assert outs["inflated"]["bures_excess"] > 5 * exact["bures_noise"]
    assert outs["weights"]["weight_error"] > 4 * exact["weight_error_exact"]
    assert all(o["total"] > 2 * exact["total"] for o in outs.values())


def test_mixture_error_validation_and_devices():
    mix = _overlapping_mixture()
    x = mix.sample(50, generator=gen(0)).float()
    out = mixture_error(x, mix, reference_draws=2, generator=gen(3))
    assert set(out) >= {
        "weight_error",
        "bures",
        "bures_exact",
        "bures_excess",
        "total",
        "nonfinite",
    }
    assert all(isinstance(v, (float, int)) for v in out.values())
    with pytest.raises(ValueError, match="features"):
        mixture_error(torch.zeros(5, 3), mix)
    with pytest.raises(ValueError, match="at least as many"):
        mixture_error(x, mix, reference_samples=x[:10])
    allbad = mixture_error(torch.full((4, 2), float("inf")), mix, reference_draws=2)
    assert allbad["weight_error"] == 1.0 and allbad["total"] == math.inf


def test_heldout_nll():
    lp = torch.tensor([-1.0, -2.0, -3.0])
    out = heldout_nll(lp, dims=2)
    assert out["nll"] == pytest.approx(2.0)
    assert out["stderr"] == pytest.approx(1 / math.sqrt(3))
    assert out["bits_per_dim"] == pytest.approx(1 / math.log(2))
    with pytest.raises(ValueError, match="NaN"):
        heldout_nll(torch.tensor([float("nan")]))


# -- exact Wasserstein-1 and coverage -------------------------------------------------------------
def test_wasserstein1_is_exact_on_shifts_and_in_one_dimension():
    from scorematch.metrics import wasserstein1

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g, dtype=F64)
    shift = torch.tensor([0.3, -1.2, 0.0, 2.0], dtype=F64)
    # W1(x, x + c) = ‖c‖: the identity plan costs ‖c‖ and ‖E x − E y‖ bounds every plan below.
    assert float(wasserstein1(x, x + shift)) == pytest.approx(float(shift.norm()), rel=1e-12)
    assert float(wasserstein1(x, x[torch.randperm(300, generator=g)])) == 0.0
    # In 1-D the optimal plan matches order statistics.
    a, b = torch.randn(257, 1, generator=g, dtype=F64), torch.rand(257, 1, generator=g, dtype=F64)
    want = (a.sort(0).values - b.sort(0).values).abs().mean()
    assert float(wasserstein1(a, b)) == pytest.approx(float(want), rel=1e-12)
    costs = wasserstein1(a, b, reduction="none")
    assert costs.shape == (257,) and float(costs.mean()) == pytest.approx(float(want), rel=1e-12)
    with pytest.raises(ValueError, match="same size"):
        wasserstein1(a, b[:10])


def test_coverage_counts_the_real_rows_whose_neighbourhood_holds_a_sample():
    from scorematch.metrics import coverage

    g = torch.Generator().manual_seed(1)
    real = torch.randn(200, 3, generator=g, dtype=F64)
    assert float(coverage(real, real)) == 1.0
    assert float(coverage(real, real + 100.0)) == 0.0
    # L1 distances: the corners of a 2×2 square have radius 2 (k = 1: the 2nd nearest other
    # corner, L1 distances 2, 2, 4); a sample at (0.6, 0.9) is 1.5 from (0, 0) and 1.7 from
    # (0, 2) in L1 but 2.3 and 2.5 from the others, so it covers 2 of 4 (in L2 it would cover 3).
    square = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]], dtype=F64)
    got = coverage(square, torch.tensor([[0.6, 0.9]], dtype=F64), reduction="none")
    assert got.tolist() == [1.0, 0.0, 1.0, 0.0]
    # Duplicated rows: radii of 0 cover nothing, so k grows until 95 % of the rows have a positive
    # one (k = 3 for three copies each of 0 and 10), and the radius is then 10.
    twins = torch.tensor([[0.0]] * 3 + [[10.0]] * 3, dtype=F64)
    for fake, want in ((5.0, 1.0), (10.5, 0.5), (-9.5, 0.5), (-10.0, 0.0)):
        assert float(coverage(twins, torch.tensor([[fake]], dtype=F64))) == want
    # Ten points 0…9 on a line: k = 1, so a row's radius is its 2nd nearest other row's distance
    # (1 inside, 2 at the ends); a sample must lie strictly inside.
    line = torch.arange(10, dtype=F64)[:, None]
    for fake, want in ((0.5, 0.2), (4.5, 0.2), (9.0, 0.1), (20.0, 0.0)):
        assert float(coverage(line, torch.tensor([[fake]], dtype=F64))) == pytest.approx(want)
    with pytest.raises(ValueError, match="at least 3"):
        coverage(line[:2], line)
