"""DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models"), data-prediction form, for any process with marginals α_t, σ_t.

In Lu et al.'s half log-SNR λ = log(α/σ) (NOTE: half of ``process.log_snr`` = log(α²/σ²)), the
probability-flow ODE solved for the data prediction x̂₀(x, t) = (x + σ² s(x, t))/α (Tweedie) is

    x_t = (σ_t/σ_s) x_s + σ_t ∫_{λ_s}^{λ_t} e^λ x̂₀(λ) dλ        (exact; variation of constants).

Expanding x̂₀ in λ around λ_s to order k − 1, with h = λ_t − λ_s, gives the order-k step

    x_t = (σ_t/σ_s) x_s + α_t (c₀ x̂₀ + c₁ x̂₀' + c₂ x̂₀''),
    c₀ = 1 − e^{−h},  c₁ = h − c₀,  c₂ = h²/2 − c₁        (c_n = e^{−h} ∫₀^h τⁿ/n! e^τ dτ),

where the λ-derivatives x̂₀', x̂₀'' are divided differences of the data predictions of the previous
steps (multistep: one model call per step).  Order 2 uses Lu et al.'s own coefficient c₀h/2 for
x̂₀' (their Alg. 2, x̂₀ + (1/2r)(x̂₀ − x̂₀_prev) with r = h_prev/h); it equals c₁ to O(h³) and, on the
2-D mixture tests, gives ~1.6× lower error at 10 steps than c₁.  Order 3 uses c₁ and c₂ as above.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_positive
from .base import Callback, CountingModel, Samples, check_steps, initial_state
from .grids import log_snr, t_of_sigma
from .ode import _time_grid

__all__ = ["dpm_solver"]


FEW_STEPS = 12  # the few-step recipe below is used for at most this many model calls
JUMP, END = 10.0, 0.1  # its first stop and its end, in units of σ_data


def dpm_solver(
    model,
    process,
    x_init_or_shape,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    order: int | None = None,
    grid="auto",
    lower_order_final: bool = True,
    denoise: bool | None = None,
    sigma_data: float | None = None,
    return_trajectory: bool = False,
) -> Samples:
    """DPM-Solver++(kM): multistep exponential integrator in log-SNR time (Lu et al. 2022, Alg. 2).

    Step i goes from t_{i−1} to t_i with h_i = λ_i − λ_{i−1}, λ = log(α/σ):

        x_i = (σ_i/σ_{i−1}) x_{i−1} + α_i (c₀ D₀ + c₁ D₁ + c₂ D₂),   c₀ = 1 − e^{−h}, c₁ = h − c₀,
        c₂ = h²/2 − c₁, D₀ = x̂₀(x_{i−1}, t_{i−1}), and D₁ ≈ dx̂₀/dλ, D₂ ≈ d²x̂₀/dλ² from the
        Newton divided differences of the last ``order`` data predictions (order 1 is DDIM;
        order 2 is Lu et al.'s 2M step, which takes c₀h/2 for c₁).

    The first step is order 1 and the second at most order 2 (no history yet).  With
    ``lower_order_final`` the last two steps drop order (the last is order 1), as DPM-Solver does
    below 15 steps; we do it at any step count, since a grid may end with a long log-SNR step
    (VP's uniform grid: higher orders extrapolating across it made the error grow with steps).

    ``grid="auto"`` (default) is the log-SNR grid from t_max to t_min, except for few steps
    (3 ≤ steps ≤ 12) where it is a recipe measured on Gaussian mixtures (benchmarks/samplers.py,
    10 NFE: 5× / 4.5× lower error than the plain grid on the 2-D / 16-D mixture, 4× / 7.5× lower
    than diffusers' DPM-Solver++): one step
    from t_max to σ̂ = σ/α = 10 σ_data, log-SNR steps down to σ̂ = 0.1 σ_data, then the data
    prediction x̂₀ there (Tweedie, a last order-1 step to σ = 0), order 2.  NFE stays ``steps``.
    Tweedie shrinks each mode's covariance Σ to Σ(Σ + σ̂²I)⁻¹Σ, i.e. by ~(0.1 σ_data)²: a bias
    below few-step discretisation error, but the reason the recipe stops at 12 steps.

    Args:
        steps: NFE.  Grid intervals N = steps, or steps − 1 under the few-step recipe (its last
            call is the x̂₀ step); +1 call with an explicit ``denoise=True``.
        order: 1, 2 (DPM-Solver++(2M)) or 3 (DPM-Solver++(3M); Lu et al. recommend it for
            unconditional sampling, and it halves 2M's error at 10–20 steps on the plain grid).
            Default: 2 under the few-step recipe (3M's divided differences span its first jump),
            otherwise 3.
        grid: ``"auto"``, ``"log_snr"`` (uniform in λ), ``"edm_rho"``, ``"uniform"``, callable or
            tensor of times.
        denoise: return x̂₀(x_N, t_N) instead of the ODE state x_N (+1 model call).  Default: only
            under the few-step recipe, where it is part of the step count.
        sigma_data: the data's standard deviation for the few-step recipe; default
            ``process.sigma_data`` if the process has one (EDM), else 0.5 (EDM's value for data in
            [−1, 1]; standardised data have 1).
        return_trajectory: keep x at every grid time (N + 1 tensors, x_T first).

    callback receives ``{"i", "t", "x", "denoised"}`` after each step (x at t = t_{i+1},
    ``denoised`` = the step's data prediction x̂₀).
    """
    steps = check_steps(steps)
    if order is not None and order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    intervals = steps
    grid, few = _resolve_grid(grid, process, steps, denoise, sigma_data)
    if few:
        intervals = steps - 1 if denoise is None else steps
        denoise = True if denoise is None else denoise
    order = order if order is not None else 2 if few else 3
    denoise = bool(denoise)
    counted = CountingModel(model)

    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        t_grid = _time_grid(grid, process, intervals)
        alphas, sigmas = process.marginal(t_grid)
        lam = (alphas.log() - sigmas.log()).tolist()  # Lu et al.'s λ: half of process.log_snr
        t_grid, alphas, sigmas = t_grid.tolist(), alphas.tolist(), sigmas.tolist()

        def data_prediction(x: Tensor, i: int) -> Tensor:
            """x̂₀ = (x + σ² s(x, t)) / α at grid time t_i (Tweedie)."""
            tt = torch.full((x.shape[0],), t_grid[i], dtype=x.dtype, device=x.device)
            return (x + sigmas[i] ** 2 * counted(x, tt)) / alphas[i]

        trajectory = [x] if return_trajectory else None
        history: list[Tensor] = []  # data predictions of the previous steps, newest first
        for i in tqdm(range(intervals), disable=not progress, desc="dpm_solver++"):
            m0 = data_prediction(x, i)
            k = min(order, i + 1)
            if lower_order_final:
                k = min(k, intervals - i)
            h = lam[i + 1] - lam[i]
            c0 = -math.expm1(-h)
            c1 = h - c0
            c2 = 0.5 * h * h - c1
            update = c0 * m0
            if k >= 2:
                h0 = lam[i] - lam[i - 1]
                f01 = (m0 - history[0]) / h0  # first divided difference in λ
                if k == 2:  # Lu et al.'s 2M: c₀ (h/2) in place of c₁, same order, smaller error
                    update = update + c0 * 0.5 * h * f01
                else:
                    h1 = lam[i - 1] - lam[i - 2]
                    f12 = (history[0] - history[1]) / h1
                    f012 = (f01 - f12) / (h0 + h1)  # second divided difference: x̂₀'' ≈ 2 f012
                    update = update + c1 * (f01 + h0 * f012) + c2 * 2 * f012
            x = (sigmas[i + 1] / sigmas[i]) * x + alphas[i + 1] * update
            history = [m0, *history][: order - 1]
            if trajectory is not None:
                trajectory.append(x)
            if callback is not None:
                callback({"i": i, "t": t_grid[i + 1], "x": x, "denoised": m0})
        if denoise:
            x = data_prediction(x, intervals)
    return Samples(x, counted.nfe, trajectory)


def _resolve_grid(grid, process, steps: int, denoise: bool | None, sigma_data: float | None):
    """(grid, few-step recipe?) for ``grid="auto"``; other grids pass through unchanged."""
    if not (isinstance(grid, str) and grid == "auto"):
        return grid, False
    if not 3 <= steps <= FEW_STEPS:
        return "log_snr", False
    if sigma_data is None:
        sigma_data = getattr(process, "sigma_data", 0.5)
    sigma_data = check_positive(sigma_data, "sigma_data")
    alpha, sigma = process.marginal(
        torch.tensor([process.t_max, process.t_min], dtype=torch.float64)
    )
    s_max, s_min = (sigma / alpha).tolist()
    # Stop early only when the final x̂₀ step (denoise) makes up for the rest of the path.
    end = max(END * sigma_data, s_min) if denoise is not False else s_min
    jump = JUMP * sigma_data
    if not end < jump < s_max:
        return "log_snr", False
    t_end = process.t_min if end == s_min else t_of_sigma(process, end)

    def few_step(process, n: int) -> Tensor:
        return log_snr(process, n, t_min=t_end, sigma_jump=jump)

    return few_step, True
