"""Explicit score matching (ESM): regress the model score on a known score."""

from __future__ import annotations

from torch import Tensor

from .._checks import check_batch, check_reduction, reduce
from ._common import ScoreFn, check_score, sq_norm

__all__ = ["esm"]


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
