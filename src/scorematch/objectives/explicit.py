"""Explicit score matching (ESM): regress the model score on a known score.

Also holds the small checks every objective in this package shares.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .._checks import check_batch, check_reduction, reduce

__all__ = ["esm"]

ScoreFn = Callable[[Tensor], Tensor]


def check_score(s: object, x: Tensor, what: str = "score_fn(x)") -> Tensor:
    """Require a score of exactly x's shape (a per-sample function of x)."""
    if not isinstance(s, Tensor) or s.shape != x.shape:
        got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"{what} must be a tensor of x's shape {tuple(x.shape)}, got {got}")
    return s


def sq_norm(v: Tensor) -> Tensor:
    """Per-sample squared Euclidean norm over the event dimensions, shape ``(B,)``."""
    return v.reshape(v.shape[0], -1).square().sum(1)


def esm(
    score_fn: ScoreFn,
    x: Tensor,
    target_score: Tensor | ScoreFn,
    *,
    reduction: str = "mean",
) -> Tensor:
    """Explicit score matching, ½‖s_θ(x) − ∇ₓ log p(x)‖² per sample.

    The regression loss that the other objectives stand in for when the true score is unknown
    (Hyvärinen 2005, "Estimation of non-normalized statistical models by score matching";
    its expectation over p is the Fisher divergence ½ E_p‖s_θ − ∇log p‖²).

    Args:
        score_fn: ``score_fn(x)`` returning a tensor of x's shape.
        x: batch ``(B, *event)``.
        target_score: the true score at x — a tensor of x's shape, or a callable ``f(x)``.
        reduction: ``"mean"`` | ``"sum"`` over the batch, or ``"none"`` for shape ``(B,)``.
    """
    check_reduction(reduction)
    check_batch(x, "x")
    s = check_score(score_fn(x), x)
    target = target_score(x) if callable(target_score) else target_score
    check_score(target, x, "target_score")
    if not bool(target.isfinite().all()):
        raise ValueError("target_score contains NaN or infinite values")
    return reduce(0.5 * sq_norm(s - target), reduction)
