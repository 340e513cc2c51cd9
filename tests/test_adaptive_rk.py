"""Embedded Runge–Kutta pairs with per-sample steps, against order conditions and exact solutions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scorematch.adaptive_rk import TABLEAUS, solve

F64 = torch.float64


def _order_conditions(w: np.ndarray, a: np.ndarray, c: np.ndarray) -> dict[int, list[float]]:
    """Residuals of the rooted-tree order conditions up to order 5 (Butcher), per order."""
    return {
        1: [w.sum() - 1],
        2: [w @ c - 1 / 2],
        3: [w @ c**2 - 1 / 3, w @ a @ c - 1 / 6],
        4: [w @ c**3 - 1 / 4, w @ (c * (a @ c)) - 1 / 8, w @ a @ c**2 - 1 / 12,
            w @ a @ a @ c - 1 / 24],
        5: [w @ c**4 - 1 / 5, w @ (c**2 * (a @ c)) - 1 / 10, w @ (a @ c) ** 2 - 1 / 20,
            w @ (c * (a @ c**2)) - 1 / 15, w @ (c * (a @ a @ c)) - 1 / 30, w @ a @ c**3 - 1 / 20,
            w @ a @ (c * (a @ c)) - 1 / 40, w @ a @ a @ c**2 - 1 / 60,
            w @ a @ a @ a @ c - 1 / 120],
    }  # fmt: skip


@pytest.mark.parametrize("name", list(TABLEAUS))
def test_tableaus_have_their_orders_and_are_first_same_as_last(name):
    tab = TABLEAUS[name]
    s = tab.stages
    a = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        assert len(row) == i
        a[i, :i] = row
    c, b = np.array(tab.c), np.array(tab.b)
    b_hat = b - np.array(tab.e)
    np.testing.assert_allclose(a.sum(1), c, atol=1e-14)
    np.testing.assert_allclose(a[-1, :-1], b[:-1], atol=0)  # FSAL: last stage at the new state
    assert c[-1] == 1 and b[-1] == 0
    for weights, order in ((b, tab.order), (b_hat, tab.error_order)):
        conditions = _order_conditions(weights, a, c)
        for k in range(1, order + 1):
            assert max(abs(r) for r in conditions[k]) < 1e-13, (name, order, k)
        if order + 1 in conditions:  # and not one order more: the pair's error estimate is real
            assert max(abs(r) for r in conditions[order + 1]) > 1e-4


def _decay(rates: torch.Tensor, calls: list | None = None):
    def f(t, y, rows):
        if calls is not None:
            calls.append(t.clone())
        return -rates[rows, None] * y

    return f


@pytest.mark.parametrize("method", list(TABLEAUS))
def test_each_sample_takes_its_own_steps_and_meets_the_tolerance(method):
    rates = torch.tensor([0.5, 2.0, 8.0, 30.0], dtype=F64)
    y0 = torch.ones(4, 2, dtype=F64)
    calls: list = []
    sol = solve(_decay(rates, calls), y0, 0.0, 1.0, method=method, rtol=1e-7, atol=1e-7)
    exact = torch.exp(-rates)[:, None] * y0
    assert ((sol.y - exact).abs() < 1e-5).all()
    nfe = sol.nfe.tolist()
    assert nfe == sorted(nfe) and nfe[0] < nfe[-1]  # stiffer decay, more evaluations
    assert sol.calls == max(nfe) == len(calls)  # the slowest sample is in every batched call
    times = torch.cat(calls)
    assert times.min() >= 0.0 and times.max() <= 1.0  # never outside [t0, t1]
    # A sample's answer and cost do not depend on the batch it is solved in.
    for i in range(4):
        alone = solve(_decay(rates[i : i + 1]), y0[i : i + 1], 0.0, 1.0, method=method,
                      rtol=1e-7, atol=1e-7)  # fmt: skip
        assert torch.equal(alone.y[0], sol.y[i]) and int(alone.nfe[0]) == nfe[i]
        assert int(alone.accepted[0]) == int(sol.accepted[i])


def test_tighter_tolerance_smaller_error_at_the_methods_order():
    """Halving the error tolerance 1e3-fold shrinks the error ~1e3-fold (tolerance proportionality)."""
    omega = torch.tensor([1.0, 3.0], dtype=F64)

    def f(t, y, rows):  # harmonic oscillators, solution (cos ωt, −ω sin ωt)
        return torch.stack([y[:, 1], -(omega[rows] ** 2) * y[:, 0]], 1)

    y0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    exact = torch.stack([torch.cos(2 * omega), -omega * torch.sin(2 * omega)], 1)
    errors = []
    for tol in (1e-5, 1e-8):
        sol = solve(f, y0, 0.0, 2.0, rtol=tol, atol=tol)
        errors.append(float((sol.y - exact).abs().max()))
    assert errors[0] < 1e-3 and errors[1] < 1e-6 and errors[1] < errors[0] / 100


def test_gradients_flow_through_the_accepted_steps():
    """y' = θ y: y(1) = e^θ y₀ and d y(1)/dθ = y(1); d y(1)/d y₀ = e^θ."""
    theta = torch.tensor([0.7, -1.3], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[2.0], [0.5]], dtype=F64, requires_grad=True)
    sol = solve(lambda t, y, rows: theta[rows, None] * y, y0, 0.0, 1.0, rtol=1e-7, atol=1e-7)
    g_theta, g_y0 = torch.autograd.grad(sol.y.sum(), [theta, y0])
    expected = torch.exp(theta.detach())
    torch.testing.assert_close(g_theta, expected * y0.detach()[:, 0], rtol=1e-5, atol=0)
    torch.testing.assert_close(g_y0[:, 0], expected, rtol=1e-5, atol=0)


def test_a_sample_whose_derivative_is_not_finite_stops_and_the_others_finish():
    def f(t, y, rows):
        out = -y.clone()
        out[rows == 1] = float("nan")
        return out

    sol = solve(f, torch.ones(3, 1, dtype=F64), 0.0, 1.0)
    assert torch.isnan(sol.y[1]).all()
    torch.testing.assert_close(sol.y[[0, 2], 0], torch.full((2,), math.exp(-1), dtype=F64),
                               rtol=1e-4, atol=0)  # fmt: skip


def test_bad_arguments():
    f = _decay(torch.ones(1, dtype=F64))
    y0 = torch.ones(1, 1, dtype=F64)
    with pytest.raises(ValueError, match="unknown method 'rk45'"):
        solve(f, y0, 0.0, 1.0, method="rk45")
    with pytest.raises(ValueError, match="t0 < t1"):
        solve(f, y0, 1.0, 1.0)
    with pytest.raises(RuntimeError, match="did not reach"):
        solve(f, y0, 0.0, 1.0, rtol=1e-12, atol=1e-12, max_steps=3)
