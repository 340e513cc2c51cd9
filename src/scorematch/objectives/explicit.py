"""Explicit score matching (ESM): regress the model score on a known score.

Also holds the small checks every objective in this package shares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.func import vmap

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


def score_and_vjps(
    score_fn: ScoreFn,
    x: Tensor,
    cotangents: Iterable[Tensor],
    reduce_fn: Callable[[Tensor, Tensor], Tensor],
) -> tuple[Tensor, list[Tensor]]:
    """s(x) and ``reduce_fn(Jᵀv, v)`` for each block v of cotangents, shape ``(m, B, *event)``.

    Reverse over reverse with plain autograd: one forward pass, then one create-graph backward
    pass per block, vectorised over the block's m cotangents with ``torch.func.vmap``.  Blocks are
    consumed one at a time, so only their reductions stay alive.  With one cotangent per sample
    (SSM's default) this measured ~5% cheaper per training step on CPU than ``torch.func.vjp``
    (dispatch overhead) and ~1.5× cheaper than a forward-mode jvp; the gradient that the later
    backward pass also sends to the detached input costs one small matrix product.
    Works under ``no_grad`` (results detached) and ``inference_mode`` (on ordinary copies).
    """
    grad_enabled = torch.is_grad_enabled()
    reduced = []
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone() if x.is_inference() else x  # inference tensors cannot be saved for backward
        xr = x if x.requires_grad else x.detach().requires_grad_(True)
        s = check_score(score_fn(xr), x)
        for v in cotangents:
            v = v.clone() if v.is_inference() else v
            jtv = None
            if s.requires_grad and v.shape[0] == 1:
                jtv = _vjp(s, xr, v[0]).unsqueeze(0)
            elif s.requires_grad:
                # torch.func.vmap, not is_grads_batched: the latter's legacy vmap lacks batching
                # rules that convolutional networks need.
                jtv = vmap(lambda u: _vjp(s, xr, u))(v)
            reduced.append(reduce_fn(torch.zeros_like(v) if jtv is None else jtv, v))
    if not grad_enabled:
        s, reduced = s.detach(), [r.detach() for r in reduced]
    return s, reduced


def _vjp(s: Tensor, x: Tensor, v: Tensor) -> Tensor:
    """Jᵀv by one create-graph backward pass (zeros when s does not depend on x)."""
    (g,) = torch.autograd.grad(s, x, v, create_graph=True, retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


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
