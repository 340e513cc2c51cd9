"""The per-column Yeo–Johnson transform (issue #20, item 5): a bijection of the line for λ in
[0, 2] with its exact log-derivative, λ recovered by the profile likelihood, only clearly skewed
columns transformed, inverted on sample, and the likelihood of a transformed column equal to the
change-of-variables density in data units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scorematch.data import ColumnCodec, Standardizer, Table
from scorematch.data.marginals import MIN_SKEW, YeoJohnson
from scorematch.distributions import Gaussian
from scorematch.processes import VP
from scorematch.runs import Run

F64 = torch.float64


@pytest.mark.parametrize("lam", [0.0, 1e-9, 0.3, 1.0, 1.7, 2.0 - 1e-9, 2.0])
def test_yeo_johnson_is_a_bijection_with_its_exact_log_derivative(lam):
    t = YeoJohnson(shift=1.5, scale=2.0, lam=lam)
    x = torch.linspace(-60, 80, 2001, dtype=F64)
    y = t.forward(x)
    assert torch.isfinite(y).all() and (y.diff() > 0).all()  # increasing
    torch.testing.assert_close(t.inverse(y), x, rtol=1e-10, atol=1e-9)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(t.forward(xr).sum(), xr)
    torch.testing.assert_close(t.log_derivative(x), grad.log(), rtol=1e-9, atol=1e-9)
    # Every real y has a preimage: the inverse of far-out samples is finite.
    far = torch.tensor([-30.0, 30.0], dtype=F64)
    assert torch.isfinite(t.inverse(far)).all()
    with pytest.raises(ValueError, match="λ must lie in"):
        YeoJohnson(0.0, 1.0, 2.5)


def test_fit_recovers_lambda_and_leaves_symmetric_columns_alone():
    g = torch.Generator().manual_seed(0)
    truth = YeoJohnson(0.0, 1.0, 0.3)
    y = torch.randn(20000, generator=g, dtype=F64) * 0.8 + 0.4
    x = truth.inverse(y)  # ψ_λ(x) is Gaussian: skewed x
    fitted = YeoJohnson.fit(x)
    # λ maximises the profile likelihood of the standardised column: a grid search agrees.
    u = (x - x.mean()) / x.std(correction=0)
    jac = (torch.sign(u) * torch.log1p(u.abs())).sum()

    def profile(lam: float) -> float:
        z = YeoJohnson(0.0, 1.0, lam).forward(u)
        return float(-0.5 * len(u) * z.var(correction=0).log() + (lam - 1) * jac)

    grid = np.linspace(0, 2, 2001)
    best = grid[np.argmax([profile(v) for v in grid])]
    assert abs(fitted.lam - best) < 2e-3 and fitted.shift == pytest.approx(float(x.mean()))
    z = fitted.forward(x)
    skew = float((((z - z.mean()) / z.std()) ** 3).mean())
    raw = float((((x - x.mean()) / x.std()) ** 3).mean())
    assert abs(raw) > MIN_SKEW and abs(skew) < 0.1
    symmetric = torch.randn(5000, generator=g, dtype=F64) * 3 + 7
    assert YeoJohnson.fit(symmetric).identity
    assert YeoJohnson.fit(torch.full((10,), 2.0, dtype=F64)).identity
    d = YeoJohnson.from_dict(fitted.to_dict())
    assert d == fitted


def test_the_likelihood_of_a_transformed_column_is_its_density_in_data_units():
    """One continuous column x with T = the codec's fitted transform; the model in its
    coordinates is a Gaussian N(m, s²) (standardisation identity): log p_X(x) = log N(T(x)) +
    log T'(x), and samples are T⁻¹ of the Gaussian's."""
    g = np.random.default_rng(1)
    x = np.exp(g.normal(0, 0.6, 400))  # log-normal: skewed
    codec = ColumnCodec.detect(Table(x[:, None], ["x"], has_header=True))
    codec = codec.fit(torch.from_numpy(x)[:, None])
    (column,) = codec.columns
    assert column.transform is not None and 0.0 <= column.transform["lam"] < 1.0
    t = YeoJohnson.from_dict(column.transform)
    law = Gaussian(torch.tensor([0.1], dtype=F64), torch.tensor([[0.9]], dtype=F64), dtype=F64)
    process = VP()
    config = {
        "objective": {"name": "diffusion", "weighting": "sigma2"},
        "data": {"kind": "vector", "shape": [1], "levels": None, "columns": codec.to_config()},
        "sampling": {"sampler": "heun", "steps": 30},
    }
    std = Standardizer("vector", (1,), torch.zeros(1), torch.ones(1))
    run = Run(config, law.score_model(process), process, std)
    rows = torch.tensor([[0.3], [1.0], [2.5], [9.0]], dtype=F64)
    lp, _ = run.log_likelihood(rows)
    y = t.forward(rows)
    exact = law.log_prob(y) + t.log_derivative(rows[:, 0])
    # VP at t_min blurs N(0.1, 0.9) by a relative 1e-3: within the tolerance.
    torch.testing.assert_close(lp, exact, rtol=0, atol=5e-3)
    s = run.sample(4000, seed=0).x[:, 0].double()
    assert (s > 0).float().mean() > 0.99  # T⁻¹ of the Gaussian: the log-normal's support
    med = float(t.inverse(torch.tensor([0.1], dtype=F64)))
    assert abs(float(s.median()) - med) < 0.05 * med
    assert math.isfinite(float(s.std()))
