"""Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models"),
Algorithm 2: Heun's method on the probability-flow ODE with optional "churn" noise.

Written for any process through scaled variables: with x_t = α_t x₀ + σ_t ε, the state
y = x/α has noise level σ̂ = σ/α, and the probability-flow ODE of y is EDM's

    dy/dσ̂ = (y − D(y; σ̂)) / σ̂,     D(y; σ̂) = E[x₀ | y] = y + σ̂² ∇_y log p(y; σ̂),

with ∇_y log p(y; σ̂) = α ∇ₓ log p_t(αy) by the chain rule, so D = y + σ̂² α s(αy, t).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_positive, noise_like
from ._common import check_finite, report, time_grid
from .base import Callback, CountingModel, Samples, initial_state

__all__ = ["DEFAULT_STEPS", "FAMILY", "heun"]

DEFAULT_STEPS = 17  # EDM's CIFAR-10 setting (num_steps = 18 σ's, the last step to 0): 35 calls
FAMILY = "ode"  # grid="auto" is process.default_grid("ode")


def heun(
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
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    return_trajectory: bool = False,
) -> Samples:
    """EDM sampler (Karras et al. 2022, Alg. 2, stochastic; with ``s_churn = 0`` their Alg. 1).

    On the resolved grid σ̂_0 > … > σ̂_N (σ̂ = σ_t/α_t at the grid times), followed with ``denoise``
    by σ̂ = 0 (the x̂₀ step), step i of the M intervals (M = N, + 1 with ``denoise``):

        γ = min(s_churn/M, √2 − 1) if s_tmin ≤ σ̂_i ≤ s_tmax else 0,   σ̃ = σ̂_i (1 + γ)
        ỹ = y_i + √(σ̃² − σ̂_i²) · s_noise · ε                          (churn: raise the noise)
        d = (ỹ − D(ỹ; σ̃)) / σ̃,   y_{i+1} = ỹ + (σ̂_{i+1} − σ̃) d               (Euler)
        d' = (y_{i+1} − D(y_{i+1}; σ̂_{i+1})) / σ̂_{i+1}
        y_{i+1} = ỹ + (σ̂_{i+1} − σ̃)(d + d')/2                     (Heun, on every interval with
                                                                    σ̂_{i+1} > 0)

    The step to σ̂ = 0 is Euler only, which is y ← D(ỹ; σ̃) = x̂₀: EDM's last step.  So
    ``heun(grid=σ)`` with σ = EDM's grid σ_0 > … > σ_{K−1} (``edm_rho(process, K − 1)``, i.e.
    ``steps = K − 1``; or k-diffusion's ``get_sigmas_karras(K, …)[:-1]``) and ``denoise=True`` is
    EDM's Alg. 2 with num_steps = K — M = K as in their γ — and with ``s_churn = 0`` Alg. 1; a
    grid ending in 0 (k-diffusion's whole ``get_sigmas_karras(K, …)``) is the same run.  EDM's
    CIFAR-10 setting, K = 18, is ``heun(steps=17)``: 35 model calls (``DEFAULT_STEPS``).

    σ̃ is mapped back to the process clock by t = t_of_log_snr(−2 log σ̃), clamped to t_max.

    Args:
        steps: grid intervals N (default 17).  NFE = 2N, +1 with ``denoise`` (the x̂₀ step).
        grid: ``"auto"`` = ``process.default_grid("ode")``, ``"edm_rho"`` (ρ = 7, Karras et al.
            eq. 5) on every process; any grid name, callable or tensor (ending in 0 or not).
        s_churn, s_tmin, s_tmax, s_noise: EDM's S_churn, S_tmin, S_tmax, S_noise; the noise
            window [s_tmin, s_tmax] is in scaled noise level σ̂.  ``s_churn = 0``: deterministic.
        callback, progress, denoise, return_trajectory: see :mod:`scorematch.samplers.base`; the
            callback's ``denoised`` is the D of the step's first evaluation (after churn), on the
            data scale.
    """
    for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin)):
        if not float(value) >= 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
    if not float(s_tmax) >= float(s_tmin):
        raise ValueError(f"need s_tmax >= s_tmin, got {s_tmax} and {s_tmin}")
    check_positive(s_noise, "s_noise")
    t_grid, x0_step = time_grid(
        grid, process, steps, family=FAMILY, default_steps=DEFAULT_STEPS, denoise=denoise
    )
    steps = len(t_grid) - 1
    counted = CountingModel(model)

    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        t64 = torch.tensor(t_grid, dtype=torch.float64)
        alphas = process.marginal(t64)[0].tolist()
        s_hat = process.sigma_hat(t64).tolist()
        # churn never raises the noise above the prior's
        sigma_hat_max = float(process.sigma_hat(torch.tensor(process.t_max, dtype=torch.float64)))

        def denoiser(y: Tensor, t: float) -> Tensor:
            """D(y; σ̂) = E[x₀ | x_t = αy] (Tweedie), one model call."""
            alpha = float(process.marginal(torch.tensor(t, dtype=torch.float64))[0])
            tt = torch.full((y.shape[0],), t, dtype=y.dtype, device=y.device)
            return process.denoise(alpha * y, t, counted(alpha * y, tt))

        y = x / alphas[0]
        trajectory = [x] if return_trajectory else None
        # EDM's N counts every interval, the step to σ = 0 (x̂₀) included
        intervals = steps + int(x0_step)
        gamma_max = min(s_churn / intervals, math.sqrt(2) - 1)
        for i in tqdm(range(intervals), disable=not progress, desc="heun"):
            last = i == steps  # the x̂₀ step: Euler to σ̂ = 0, i.e. y ← D(y; σ̂)
            s_cur, s_next = s_hat[i], (0.0 if last else s_hat[i + 1])
            t_cur = t_grid[i]
            x_start = x
            gamma = gamma_max if s_tmin <= s_cur <= s_tmax else 0.0
            if gamma > 0:
                s_up = min(s_cur * (1 + gamma), sigma_hat_max)
                if s_up > s_cur:
                    log_snr = torch.tensor(-2 * math.log(s_up), dtype=torch.float64)
                    t_cur = min(float(process.t_of_log_snr(log_snr)), process.t_max)
                    y = y + math.sqrt(s_up**2 - s_cur**2) * s_noise * noise_like(y, generator)
                    s_cur = s_up
            denoised = denoiser(y, t_cur)
            d = (y - denoised) / s_cur
            y_next = y + (s_next - s_cur) * d
            if last:
                x = check_finite(y_next, "heun", i, 0.0)
                break
            d_next = (y_next - denoiser(y_next, t_grid[i + 1])) / s_next
            y_next = y + (s_next - s_cur) * 0.5 * (d + d_next)
            report(callback, i, t_grid[i], process, x_start, denoised)
            y = check_finite(y_next, "heun", i, t_grid[i + 1])
            x = alphas[i + 1] * y
            if trajectory is not None:
                trajectory.append(x)
    return Samples(x, counted.nfe, trajectory)
