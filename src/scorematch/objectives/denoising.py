"""Denoising score matching (DSM) at one noise level."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_batch, check_reduction, expand_like, reduce
from ._common import ScoreFn, check_score, given_or_drawn_noise, per_sample, sq_norm

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
    sig = per_sample(sigma, x, "sigma", positive=True)
    noise = given_or_drawn_noise(x, noise, generator)
    sig = expand_like(sig, x)
    x_noisy = x + sig * noise
    s = check_score(score_fn(x_noisy), x)
    # (x − x̃)/σ² = −ε/σ exactly; written this way to avoid cancellation at small σ.
    return reduce(0.5 * sq_norm(s + noise / sig), reduction)
