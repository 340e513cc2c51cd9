"""What is and is not unique about the time-dependent score (issue #14), against exact oracles.

* The η family dx = [f x − ½(1 + η²) g² ∇log p_t] dt + η g dW̄ has the marginals p_t for every η ≥ 0:
  Euler–Maruyama driven by the exact mixture score reproduces the mixture at many steps for each η.
* The processes differ only by clock and scale: the exact score of VP, SubVP or VE at t is EDM's
  at σ̂ = σ_t/α_t rescaled, s(x, t) = s_EDM(x/α_t, σ̂_t)/α_t — an identity, checked to 1e-12.
The trained-network measurements are benchmarks/uniqueness.py (docs/studies/uniqueness.md).
"""

from __future__ import annotations

import pytest
import torch
from _shared import mixture

import scorematch as sm

F64 = torch.float64


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0, 2.0])
def test_every_eta_reproduces_the_mixture_at_many_steps(eta):
    mix, process = mixture(), sm.VP()
    out = sm.samplers.euler_maruyama(
        mix.score_model(process), process, (3000, 2), 400, eta=eta,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    err = sm.metrics.mixture_error(out.x, mix)
    # within the sampling noise of exact samples of the same size (plus a small step error)
    assert err["weight_error"] < 3 * err["weight_error_exact"] + 0.01, err
    assert err["bures_excess"] < 4 * err["bures_noise"] + 0.01, err


def test_few_steps_error_depends_on_eta():
    mix, process = mixture(), sm.VP()
    totals = {}
    for eta in (0.0, 2.0):
        out = sm.samplers.euler_maruyama(
            mix.score_model(process), process, (3000, 2), 10, eta=eta,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        totals[eta] = sm.metrics.mixture_error(out.x, mix)["total"]
    assert abs(totals[0.0] - totals[2.0]) > 0.05, totals  # same marginals, different step error


@pytest.mark.parametrize("process", [sm.VP(), sm.SubVP(), sm.VE()], ids=["VP", "SubVP", "VE"])
def test_processes_are_one_family_up_to_clock_and_scale(process):
    mix, edm = mixture(), sm.EDM(sigma_min=1e-4, sigma_max=1e4)
    x = mix.sample(200, generator=torch.Generator().manual_seed(0)) * 0.7
    for t in (0.05, 0.3, 0.8):
        tt = torch.tensor(t, dtype=F64)
        alpha, sigma = process.marginal(tt)
        s = mix.score_model(process)(x, tt)
        rescaled = mix.score_model(edm)(x / alpha, sigma / alpha) / alpha
        torch.testing.assert_close(s, rescaled, rtol=1e-12, atol=1e-12)
    if not isinstance(process, sm.VE):  # the same t, a different law
        t = torch.tensor(0.5, dtype=F64)
        gap = (mix.score_model(process)(x, t) - mix.score_model(sm.VE())(x, t)).norm(dim=1)
        assert float(gap.mean()) > 0.5
