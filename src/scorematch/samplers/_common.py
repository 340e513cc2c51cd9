"""Plumbing every sampler shares: the resolved time grid, process coefficients as float64 numbers,
the checked model call, and the callback's one dict."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Callback
from .grids import resolve

__all__ = ["coefficients", "report", "score_at", "time_grid", "transition"]


def time_grid(
    grid,
    process,
    steps: int | None,
    *,
    family: str,
    default_steps: int,
    denoise: bool,
    min_points: int = 2,
) -> tuple[list[float], bool]:
    """The sampler's resolved grid (``grids.resolve``) split for its loop: the real times
    t_0 = t_max > … > t_N as float64 Python numbers (exact step arithmetic), and whether a final x̂₀
    step follows them (the grid's trailing 0)."""
    times = resolve(
        grid,
        process,
        steps,
        family=family,
        default_steps=default_steps,
        denoise=denoise,
        min_points=min_points,
    ).tolist()
    if times[-1] == 0.0:
        return times[:-1], True
    return times, False


def coefficients(process, t: float) -> tuple[float, float, float, float]:
    """(α_t, σ_t, f(t), g(t)) as float64 Python numbers."""
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = process.marginal(tt)
    return (
        float(alpha),
        float(sigma),
        float(process.log_alpha_rate(tt)),
        float(process.diffusion(tt)),
    )


def transition(process, t: float, s: float) -> tuple[float, float]:
    """Forward transition x_t = a x_s + G z between times s < t: (a = α_t/α_s, G² = σ_t² − a² σ_s²)."""
    alpha_t, sigma_t, _, _ = coefficients(process, t)
    alpha_s, sigma_s, _, _ = coefficients(process, s)
    a = alpha_t / alpha_s
    return a, max(sigma_t**2 - a**2 * sigma_s**2, 0.0)


def score_at(model, x: Tensor, t: float) -> Tensor:
    """model(x, t) at one time for the whole batch, required to return x's shape."""
    s = model(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
    if not isinstance(s, Tensor) or s.shape != x.shape:
        got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"the score model returned shape {got} for input shape {tuple(x.shape)}")
    return s


def report(callback: Callback | None, i: int, t: float, process, x: Tensor, denoised) -> None:
    """Call ``callback`` with the contract's one dict {i, t, sigma, x, denoised} (σ = σ_t/α_t)."""
    if callback is None:
        return
    alpha, sigma, _, _ = coefficients(process, t)
    callback({"i": i, "t": t, "sigma": sigma / alpha, "x": x, "denoised": denoised})


def check_finite(x: Tensor, sampler: str, i: int, t: float) -> Tensor:
    """Stop with a named error instead of returning NaN samples."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{sampler}: non-finite values in the samples after step {i} (t = {t:.6g}); "
            "the model or the step sizes diverged"
        )
    return x
