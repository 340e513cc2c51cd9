"""What every objective shares: the score-function type, shape checks, squared norms, given-or-drawn
noise, per-sample levels, and the batched vector-Jacobian products of ISM and SSM."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.func import vmap

from .._checks import broadcast_time, noise_like

__all__ = [
    "ScoreFn",
    "call_model",
    "check_score",
    "given_or_drawn_noise",
    "per_sample",
    "score_and_vjps",
    "sq_norm",
]

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
    (SSM's default) this was cheaper on CPU than ``torch.func.vjp`` and than a forward-mode jvp
    (``benchmarks/results/design_choices.md``); the gradient that the later backward pass also sends to the detached input
    costs one small matrix product.
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


def call_model(model: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor) -> Tensor:
    """model(x, t), required to return a score of x's shape."""
    out = model(x, t)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model must return a score of x's shape {tuple(x.shape)}, got {got}")
    return out


def given_or_drawn_noise(
    x: Tensor, noise: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """ε ~ N(0, I) of x's shape drawn with ``generator``, or the given ``noise`` checked."""
    if noise is None:
        return noise_like(x, generator)
    if not isinstance(noise, Tensor) or noise.shape != x.shape:
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must have x's shape {tuple(x.shape)}, got {got}")
    if not bool(torch.isfinite(noise).all()):
        raise ValueError("noise contains NaN or infinite values")
    return noise.to(dtype=x.dtype, device=x.device)


def per_sample(v: Tensor | float, x: Tensor, name: str, *, positive: bool) -> Tensor:
    """A user-given scalar or ``(B,)`` level/time as a ``(B,)`` tensor in x's dtype, checked."""
    v = broadcast_time(v, x, name)
    if not bool(torch.isfinite(v).all()) or (positive and bool((v <= 0).any())):
        what = "positive and finite" if positive else "finite"
        shown = v.tolist() if v.numel() <= 8 else f"a tensor with min {float(v.min())}"
        raise ValueError(f"{name} must be {what}, got {shown}")
    return v
