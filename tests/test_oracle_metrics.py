"""metrics.fisher_divergence and metrics.nll_gap against closed forms (Gaussian laws, float64).

For p = N(μ, Σ) and the linear score s(x) = −(x − m)/v, s − ∇log p = −A x + c with A = I/v − Σ⁻¹ and
c = m/v − Σ⁻¹μ, so E_p‖s − ∇log p‖² = tr(AΣA) + ‖Aμ − c‖².  Under a process the law at t is
N(α_t μ, α_t²Σ + σ_t²I), the same formula with those moments.  KL(N(μ₁, Σ₁) ‖ N(μ₂, Σ₂)) is the usual
½[tr(Σ₂⁻¹Σ₁) + (μ₂ − μ₁)ᵀΣ₂⁻¹(μ₂ − μ₁) − D + log det Σ₂/det Σ₁].
"""

from __future__ import annotations

import math

import pytest
import torch
from _shared import mixture

import scorematch as sm
from scorematch.metrics import fisher_divergence, nll_gap

F64 = torch.float64
Z = 4.5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


MU = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[0.6, 0.2], [0.2, 0.4]], dtype=F64)


def linear_fd(mu, cov, m, v) -> float:
    prec = torch.linalg.inv(cov)
    a = torch.eye(2, dtype=F64) / v - prec
    c = torch.full((2,), m, dtype=F64) / v - prec @ mu
    return float(torch.trace(a @ cov @ a) + (a @ mu - c).square().sum())


def linear(m, v):
    return lambda x, t=None: -(x - m) / v


def test_fisher_divergence_of_a_linear_score_matches_the_closed_form():
    law = sm.Gaussian(MU, COV)
    for m, v in ((0.0, 1.0), (1.0, 0.5)):
        out = fisher_divergence(linear(m, v), law, n=200_000, generator=gen(0))
        exact = linear_fd(MU, COV, m, v)
        assert abs(out["fisher"] - exact) < Z * out["stderr"], (out, exact)
        assert out["n"] == 200_000 and math.isnan(out["t"])
    zero = fisher_divergence(torch.zeros_like, law, n=200_000, generator=gen(1))
    assert zero["relative"] == pytest.approx(1.0) and zero["fisher"] == zero["scale"]
    # E‖∇log p‖² = tr Σ⁻¹ for a Gaussian
    exact_scale = float(torch.trace(torch.linalg.inv(COV)))
    assert abs(zero["scale"] - exact_scale) < Z * zero["stderr"]


@pytest.mark.parametrize("process", [sm.VP(), sm.VE(), sm.EDM()], ids=repr)
def test_fisher_divergence_at_a_noise_level_uses_the_noised_law(process):
    law, t = sm.Gaussian(MU, COV), 0.3
    alpha, sigma = (float(v) for v in process.marginal(torch.tensor(t, dtype=F64)))
    mu_t, cov_t = alpha * MU, alpha**2 * COV + sigma**2 * torch.eye(2, dtype=F64)
    out = fisher_divergence(
        linear(0.2, 0.7), law, process=process, t=t, n=200_000, generator=gen(2)
    )
    exact = linear_fd(mu_t, cov_t, 0.2, 0.7)
    assert abs(out["fisher"] - exact) < Z * out["stderr"] and out["t"] == t
    # The exact time-dependent score of a mixture scores exactly 0, at t_min by default.
    mix = mixture()
    perfect = fisher_divergence(mix.score_model(process), mix, process=process, generator=gen(3))
    assert perfect["fisher"] < 1e-20 and perfect["t"] == process.t_min


def test_fisher_divergence_feeds_a_module_its_dtype_and_given_points():
    mix = mixture()  # float64
    net = sm.MLPScore(2, width=8, depth=1, time_embed_dim=0)  # float32
    x = mix.sample(300, generator=gen(4))
    out = fisher_divergence(net, mix, x=x)
    # The untrained network returns 0: its divergence is the scale, on exactly these points.
    assert out["n"] == 300 and out["fisher"] == pytest.approx(out["scale"], rel=1e-12)
    assert out["scale"] == pytest.approx(float(mix.score(x).square().sum(1).mean()), rel=1e-12)


def test_fisher_divergence_errors():
    mix = mixture()
    with pytest.raises(ValueError, match="t needs a process"):
        fisher_divergence(mix.score, mix, t=0.5)
    with pytest.raises(ValueError, match="x's shape"):
        fisher_divergence(lambda x: x[:, :1], mix, n=10)
    with pytest.raises(ValueError, match="shape \\(batch, 2\\)"):
        fisher_divergence(mix.score, mix, x=torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match="NaN or inf"):
        fisher_divergence(lambda x: x / 0.0, mix, x=torch.zeros(5, 2, dtype=F64))
    with pytest.raises(ValueError, match="t must be"):
        fisher_divergence(mix.score_model(sm.VP()), mix, process=sm.VP(), t=-1.0)


def kl(mu1, cov1, mu2, cov2) -> float:
    p2 = torch.linalg.inv(cov2)
    d = mu2 - mu1
    return 0.5 * float(
        torch.trace(p2 @ cov1) + d @ p2 @ d - 2 + torch.logdet(cov2) - torch.logdet(cov1)
    )


def test_nll_gap_is_an_unbiased_kl_estimate():
    law = sm.Gaussian(MU, COV)
    other = sm.Gaussian(MU + 0.3, 1.5 * COV)
    x = law.sample(100_000, generator=gen(5))
    out = nll_gap(other.log_prob(x), x, law)
    assert abs(out["gap"] - kl(MU, COV, MU + 0.3, 1.5 * COV)) < Z * out["stderr"]
    assert out["nll"] - out["nll_true"] == pytest.approx(out["gap"], rel=1e-9)
    exact = nll_gap(law.log_prob(x), x, law)
    assert exact["gap"] == 0.0 and exact["stderr"] == 0.0


def test_nll_gap_at_a_noise_level_compares_with_the_noised_density():
    vp, mix = sm.VP(), mixture()
    alpha, sigma = (float(v) for v in vp.marginal(torch.tensor(0.2, dtype=F64)))
    noised = mix.perturbed(alpha, sigma)
    x = noised.sample(2000, generator=gen(6))
    out = nll_gap(noised.log_prob(x), x, mix, process=vp, t=0.2)
    assert out["gap"] == 0.0 and out["t"] == 0.2
    # against the clean density the same log-probabilities are far off
    assert abs(nll_gap(noised.log_prob(x), x, mix)["gap"]) > 0.1
    # by default the level is t_min, the one log_likelihood reports
    alpha, sigma = (float(v) for v in vp.marginal(torch.tensor(vp.t_min, dtype=F64)))
    low = mix.perturbed(alpha, sigma)
    assert nll_gap(low.log_prob(x), x, mix, process=vp)["gap"] == 0.0
    with pytest.raises(ValueError, match="one value per row"):
        nll_gap(noised.log_prob(x)[:5], x, mix)
    with pytest.raises(ValueError, match="NaN"):
        nll_gap(torch.full((2000,), math.nan), x, mix)
