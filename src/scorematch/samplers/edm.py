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

from .._checks import check_positive
from .base import Callback, CountingModel, Samples, check_steps, initial_state
from .ode import _time_grid

__all__ = ["heun"]


def heun(
    model,
    process,
    x_init_or_shape,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    grid="edm_rho",
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    denoise: bool = False,
    return_trajectory: bool = False,
) -> Samples:
    """EDM sampler (Karras et al. 2022, Alg. 2; Alg. 1 when ``s_churn = 0``).

    On the grid σ̂_0 > … > σ̂_N (σ̂ = σ_t/α_t at the grid times), step i:

        γ = min(s_churn/N, √2 − 1) if s_tmin ≤ σ̂_i ≤ s_tmax else 0,   σ̃ = σ̂_i (1 + γ)
        ỹ = y_i + √(σ̃² − σ̂_i²) · s_noise · ε                          (churn: raise the noise)
        d = (ỹ − D(ỹ; σ̃)) / σ̃,   y_{i+1} = ỹ + (σ̂_{i+1} − σ̃) d               (Euler)
        d' = (y_{i+1} − D(y_{i+1}; σ̂_{i+1})) / σ̂_{i+1}
        y_{i+1} = ỹ + (σ̂_{i+1} − σ̃)(d + d')/2                               (Heun, not on the last step)

    σ̃ is mapped back to the process clock by t = t_of_log_snr(−2 log σ̃), clamped to t_max.

    Args:
        steps: grid intervals N.  NFE = 2N − 1 (the last step is Euler only), +1 with ``denoise``.
        grid: default ``"edm_rho"`` (ρ = 7, Karras et al. eq. 5); any grid name, callable or tensor.
        s_churn, s_tmin, s_tmax, s_noise: EDM's S_churn, S_tmin, S_tmax, S_noise; the noise
            window [s_tmin, s_tmax] is in scaled noise level σ̂.  ``s_churn = 0``: deterministic.
        denoise: return D(y_N; σ̂_N) = E[x₀ | x_{t_min}] instead of x_{t_min} (+1 model call).
        return_trajectory: keep x at every grid time (N + 1 tensors, x_T first).

    callback receives ``{"i", "t", "x", "denoised"}`` after each step (x at t = t_{i+1},
    ``denoised`` = the D of the step's first evaluation, on the data scale).
    """
    steps = check_steps(steps)
    for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin)):
        if not float(value) >= 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
    if not float(s_tmax) >= float(s_tmin):
        raise ValueError(f"need s_tmax >= s_tmin, got {s_tmax} and {s_tmin}")
    check_positive(s_noise, "s_noise")
    counted = CountingModel(model)

    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        t_grid = _time_grid(grid, process, steps)
        alphas, sigmas = process.marginal(t_grid)
        s_hat = (sigmas / alphas).tolist()
        t_grid, alphas = t_grid.tolist(), alphas.tolist()
        a_top, s_top = process.marginal(torch.tensor(process.t_max, dtype=torch.float64))
        sigma_hat_max = float(s_top / a_top)  # churn never raises the noise above the prior's

        def denoiser(y: Tensor, t: float) -> Tensor:
            """D(y; σ̂) = y + σ̂² α s(αy, t), the posterior mean of x₀ (Tweedie)."""
            alpha, sigma = (
                float(v) for v in process.marginal(torch.tensor(t, dtype=torch.float64))
            )
            tt = torch.full((y.shape[0],), t, dtype=y.dtype, device=y.device)
            return y + (sigma / alpha) ** 2 * alpha * counted(alpha * y, tt)

        y = x / alphas[0]
        trajectory = [x] if return_trajectory else None
        gamma_max = min(s_churn / steps, math.sqrt(2) - 1)
        for i in tqdm(range(steps), disable=not progress, desc="heun"):
            s_cur, s_next = s_hat[i], s_hat[i + 1]
            t_cur = t_grid[i]
            gamma = gamma_max if s_tmin <= s_cur <= s_tmax else 0.0
            if gamma > 0:
                s_up = min(s_cur * (1 + gamma), sigma_hat_max)
                if s_up > s_cur:
                    log_snr = torch.tensor(-2 * math.log(s_up), dtype=torch.float64)
                    t_cur = min(float(process.t_of_log_snr(log_snr)), process.t_max)
                    eps = torch.randn(
                        y.shape, generator=generator, dtype=y.dtype, device=_where(generator, y)
                    )
                    y = y + math.sqrt(s_up**2 - s_cur**2) * s_noise * eps.to(y.device)
                    s_cur = s_up
            denoised = denoiser(y, t_cur)
            d = (y - denoised) / s_cur
            y_next = y + (s_next - s_cur) * d
            if i < steps - 1:
                d_next = (y_next - denoiser(y_next, t_grid[i + 1])) / s_next
                y_next = y + (s_next - s_cur) * 0.5 * (d + d_next)
            y = y_next
            x = alphas[i + 1] * y
            if trajectory is not None:
                trajectory.append(x)
            if callback is not None:
                callback({"i": i, "t": t_grid[i + 1], "x": x, "denoised": denoised})
        if denoise:
            x = denoiser(y, t_grid[-1])
    return Samples(x, counted.nfe, trajectory)


def _where(generator: torch.Generator | None, like: Tensor) -> torch.device:
    # Draw on the generator's device so a seed gives the same numbers on every device.
    return generator.device if generator is not None else like.device
