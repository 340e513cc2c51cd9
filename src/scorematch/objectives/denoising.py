"""Denoising score matching (DSM) at one noise level."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import broadcast_time, check_batch, check_reduction, expand_like, reduce
from .explicit import ScoreFn, check_score, sq_norm

__all__ = ["dsm"]


def dsm(
    score_fn: ScoreFn,
    x: Tensor,
    sigma: float | Tensor,
    *,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Denoising score matching, ½‖s_θ(x̃) − (x − x̃)/σ²‖² per sample, x̃ = x + σε, ε ~ N(0, I).

    Vincent (2011), "A Connection Between Score Matching and Denoising Autoencoders" (J_DSM):
    (x − x̃)/σ² = ∇ log q_σ(x̃ | x), and its expectation given x̃ is the score of the perturbed
    law q_σ = p * N(0, σ²I), so this loss equals ESM against ∇log q_σ up to a θ-free constant
    and is minimised by the perturbed score.  No σ² weighting here (see ``ncsn``).

    Args:
        score_fn: ``score_fn(x)`` returning a tensor of x's shape.
        x: clean batch ``(B, *event)``.
        sigma: noise level, a positive float or a per-sample tensor ``(B,)``.
        noise: ε of x's shape, to fix the noise (otherwise drawn from ``generator``).
        generator: source of ε.
        reduction: ``"mean"`` | ``"sum"`` over the batch, or ``"none"`` for shape ``(B,)``.
    """
    check_reduction(reduction)
    check_batch(x, "x")
    sig = broadcast_time(sigma, x, "sigma")
    if not bool(torch.isfinite(sig).all()) or bool((sig <= 0).any()):
        raise ValueError(f"sigma must be positive and finite, got {_show(sigma)}")
    if noise is None:
        where = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=where).to(x.device)
    else:
        if not isinstance(noise, Tensor) or noise.shape != x.shape:
            got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
            raise ValueError(f"noise must have x's shape {tuple(x.shape)}, got {got}")
        if not bool(torch.isfinite(noise).all()):
            raise ValueError("noise contains NaN or infinite values")
        noise = noise.to(dtype=x.dtype, device=x.device)
    sig = expand_like(sig, x)
    x_noisy = x + sig * noise
    s = check_score(score_fn(x_noisy), x)
    # (x − x̃)/σ² = −ε/σ exactly; written this way to avoid cancellation at small σ.
    return reduce(0.5 * sq_norm(s + noise / sig), reduction)


def _show(sigma: float | Tensor) -> str:
    if isinstance(sigma, Tensor):
        return str(sigma.tolist()) if sigma.numel() <= 8 else f"a tensor with min {sigma.min()}"
    return repr(sigma)
