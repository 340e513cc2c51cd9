"""Probability-flow ODE sampler (Song et al. 2021, "Score-Based Generative Modeling through SDEs", eq. 13).

    dx/dt = f(t) x − ½ g(t)² ∇ₓ log p_t(x)        (``Process.reverse_drift`` with η = 0),

integrated from t_max down to t_min, either with a fixed-step Runge–Kutta method on a time grid or
with an adaptive solver from torchdiffeq.  The map from prior noise to sample is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_positive, check_solver
from ._common import check_finite, report, score_at, time_grid
from .base import Callback, CountingModel, Samples, initial_state

__all__ = ["DEFAULT_STEPS", "FAMILY", "ode"]

DEFAULT_STEPS = 25  # 25 RK4 steps = 100 NFE
FAMILY = "ode"  # grid="auto" is process.default_grid("ode")
METHODS = ("euler", "heun", "rk4", "adaptive")


def ode(
    model,
    process,
    x_init_or_shape,
    steps: int | None = None,
    *,
    grid="auto",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    denoise: bool = True,
    method: str = "rk4",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "dopri5",
    solver_options: dict | None = None,
    return_trajectory: bool = False,
) -> Samples:
    """Integrate the probability-flow ODE dx/dt = f(t)x − ½g(t)² s(x, t) from t_max to t_min.

    Song et al. 2021 (ICLR), eq. 13: this ODE has the same marginals p_t as the forward SDE, so
    pushing prior samples through it gives data samples.

    Args:
        model: score model ``model(x, t) -> ∇ₓ log p_t(x)``.
        process: the forward process (gives f, g, t_min, t_max and the prior).
        x_init_or_shape: starting points at t_max, or a ``(batch, *event)`` shape to draw them from
            the prior with ``generator``.
        steps: number of grid intervals (default 25).  For the fixed-step methods this is the
            number of steps; for ``method="adaptive"`` the solver chooses its own steps and
            ``steps`` only sets the grid times at which the trajectory is recorded.
        grid: ``"auto"`` = ``process.default_grid("ode")``, ``"edm_rho"`` (ρ = 7) on every
            process; any grid name, callable or tensor.
        method: ``"euler"`` (1 model call per step), ``"heun"`` (explicit trapezoid, 2), ``"rk4"``
            (classical Runge–Kutta, 4), or ``"adaptive"`` (torchdiffeq ``odeint`` with ``solver``).
        rtol, atol: tolerances of the adaptive solver.
        solver: the adaptive torchdiffeq method (default dopri5).
        solver_options: extra ``options`` passed to ``odeint`` (e.g. ``{"first_step": 0.01}``).
        callback, progress, denoise, return_trajectory: see :mod:`scorematch.samplers.base`.  For
            the adaptive method the callback is called after the solve, once per grid time, with
            ``denoised=None`` (the solver's own evaluations are not at the grid times).

    Returns:
        ``Samples(x, nfe, trajectory)``.  NFE = steps (euler), 2·steps (heun), 4·steps (rk4);
        for the adaptive method the exact count of the solver's model calls; +1 with ``denoise``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "adaptive":
        check_solver(solver, adaptive=True)
        check_positive(rtol, "rtol")
        check_positive(atol, "atol")
    times, x0_step = time_grid(
        grid, process, steps, family=FAMILY, default_steps=DEFAULT_STEPS, denoise=denoise
    )
    counted = CountingModel(model)
    first_score: list[Tensor] = []  # the score of each step's first stage, for the callback

    def velocity(x: Tensor, t: float | Tensor) -> Tensor:
        score = score_at(counted, x, float(t))
        if not first_score:
            first_score.append(score)
        return process.reverse_drift(x, float(t), score, eta=0.0)

    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        trajectory = [x] if return_trajectory else None
        n = len(times) - 1
        if method == "adaptive":
            path = _adaptive(velocity, x, times, rtol, atol, solver, solver_options, progress)
            for i in range(n):  # the solver has run: report the states at the grid times
                report(callback, i, times[i], process, path[i], None)
                if trajectory is not None:
                    trajectory.append(path[i + 1])
            x = check_finite(path[-1], "ode", n - 1, times[-1])
        else:
            for i in tqdm(range(n), disable=not progress, desc=f"ode-{method}"):
                first_score.clear()
                x_next = _step(method, velocity, x, times[i], times[i + 1] - times[i])
                if callback is not None:
                    report(callback, i, times[i], process, x,
                           process.denoise(x, times[i], first_score[0]))  # fmt: skip
                x = check_finite(x_next, "ode", i, times[i + 1])
                if trajectory is not None:
                    trajectory.append(x)
        first_score.clear()
        if x0_step:
            x = process.denoise(x, times[-1], score_at(counted, x, times[-1]))
    return Samples(x, counted.nfe, trajectory)


def _step(method: str, v, x: Tensor, t: float, h: float) -> Tensor:
    """One explicit Runge–Kutta step of size h (negative: time runs backwards)."""
    k1 = v(x, t)
    if method == "euler":
        return x + h * k1
    if method == "heun":
        k2 = v(x + h * k1, t + h)
        return x + 0.5 * h * (k1 + k2)
    k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = v(x + h * k3, t + h)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def _adaptive(velocity, x, times, rtol, atol, solver, solver_options, progress) -> Tensor:
    """torchdiffeq's odeint from t_max to t_min; returns the states at every grid time."""
    from torchdiffeq import odeint  # imported here: only the adaptive method needs it

    bar = tqdm(disable=not progress, desc=f"ode-{solver}", unit="nfe")

    def func(t: Tensor, y: Tensor) -> Tensor:
        bar.update(1)
        return velocity(y, t)

    t_out = torch.tensor(times, dtype=x.dtype, device=x.device)
    # Adaptive Runge–Kutta steps overshoot the last time and interpolate back; make the solver
    # land on t_min exactly instead, since a process need not be defined beyond it (VP at t < 0).
    options = {"step_t": t_out[-1:], **(solver_options or {})}
    try:
        return odeint(func, x, t_out, rtol=rtol, atol=atol, method=solver, options=options)
    finally:
        bar.close()
