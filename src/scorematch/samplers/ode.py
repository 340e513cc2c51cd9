"""Probability-flow ODE sampler (Song et al. 2021, "Score-Based Generative Modeling through SDEs", eq. 13).

    dx/dt = f(t) x − ½ g(t)² ∇ₓ log p_t(x),

integrated from t_max down to t_min, either with a fixed-step Runge–Kutta method on a time grid or
with an adaptive solver from torchdiffeq.  The map from prior noise to sample is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_positive, expand_like
from .base import Callback, CountingModel, Samples, check_steps, initial_state
from .grids import make_grid

__all__ = ["ode"]

METHODS = ("euler", "heun", "rk4", "adaptive")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


def _time_grid(grid, process, steps: int) -> Tensor:
    """The grid's times t_0 = t_max > … > t_N in float64 on the CPU (exact step arithmetic)."""
    times = make_grid(grid, process, steps)
    if times.numel() != steps + 1:
        raise ValueError(
            f"the time grid has {times.numel()} points but steps = {steps} needs {steps + 1}"
        )
    return times


def _times(x: Tensor, t: float | Tensor) -> Tensor:
    """A model's time argument: t for every sample, on x's device and dtype."""
    return torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])


def ode(
    model,
    process,
    x_init_or_shape,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    method: str = "rk4",
    grid="edm_rho",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "dopri5",
    solver_options: dict | None = None,
    denoise: bool = False,
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
        steps: number of grid intervals.  For the fixed-step methods this is the number of steps;
            for ``method="adaptive"`` the solver chooses its own steps and ``steps`` only sets the
            grid times at which the trajectory is recorded and ``callback`` is called.
        method: ``"euler"`` (1 model call per step), ``"heun"`` (explicit trapezoid, 2), ``"rk4"``
            (classical Runge–Kutta, 4), or ``"adaptive"`` (torchdiffeq ``odeint`` with ``solver``).
        grid: time grid name (``"uniform"``, ``"edm_rho"``, ``"log_snr"``), callable or tensor.
        rtol, atol: tolerances of the adaptive solver.
        solver: the adaptive torchdiffeq method, one of ``ADAPTIVE_SOLVERS`` (default dopri5).
        solver_options: extra ``options`` passed to ``odeint`` (e.g. ``{"first_step": 0.01}``).
        denoise: return the Tweedie estimate E[x₀ | x_{t_min}] = (x + σ² s)/α (+1 model call).
        return_trajectory: keep the state at every grid time (steps + 1 tensors, x_T first).

    callback receives ``{"i", "t", "x"}`` after each interval (for the adaptive method: after the
    solve, once per grid time).

    Returns:
        ``Samples(x, nfe, trajectory)``.  NFE = steps (euler), 2·steps (heun), 4·steps (rk4);
        for the adaptive method the exact count of the solver's model calls; +1 with ``denoise``.
    """
    steps = check_steps(steps)
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "adaptive" and solver not in ADAPTIVE_SOLVERS:
        raise ValueError(
            f"unknown adaptive solver {solver!r}; choose one of {', '.join(ADAPTIVE_SOLVERS)}"
        )
    if method == "adaptive":
        check_positive(rtol, "rtol")
        check_positive(atol, "atol")
    counted = CountingModel(model)

    def velocity(x: Tensor, t: float | Tensor) -> Tensor:
        tt = _times(x, t)
        g = process.diffusion(tt)
        return process.drift(x, tt) - 0.5 * expand_like(g * g, x) * counted(x, tt)

    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        times = _time_grid(grid, process, steps)
        trajectory = [x] if return_trajectory else None
        if method == "adaptive":
            path = _adaptive(velocity, x, times, rtol, atol, solver, solver_options, progress)
            for i in range(steps):  # the solver has run: report the states at the grid times
                if trajectory is not None:
                    trajectory.append(path[i + 1])
                if callback is not None:
                    callback({"i": i, "t": float(times[i + 1]), "x": path[i + 1]})
            x = path[-1]
        else:
            for i in tqdm(range(steps), disable=not progress, desc=f"ode-{method}"):
                t, t_next = float(times[i]), float(times[i + 1])
                x = _step(method, velocity, x, t, t_next - t)
                if trajectory is not None:
                    trajectory.append(x)
                if callback is not None:
                    callback({"i": i, "t": t_next, "x": x})
        if denoise:
            tt = _times(x, times[-1])
            alpha, sigma = process.marginal(tt)
            x = (x + expand_like(sigma * sigma, x) * counted(x, tt)) / expand_like(alpha, x)
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

    t_out = times.to(device=x.device, dtype=x.dtype)
    # Adaptive Runge–Kutta steps overshoot the last time and interpolate back; make the solver
    # land on t_min exactly instead, since a process need not be defined beyond it (VP at t < 0).
    options = {"step_t": t_out[-1:], **(solver_options or {})}
    try:
        return odeint(func, x, t_out, rtol=rtol, atol=atol, method=solver, options=options)
    finally:
        bar.close()
