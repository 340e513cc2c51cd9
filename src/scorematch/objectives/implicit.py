"""Implicit score matching (ISM) with the exact Jacobian trace."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import vjp, vmap

from .._checks import check_batch, check_reduction, reduce
from .explicit import ScoreFn, check_score, sq_norm

__all__ = ["exact_trace", "ism"]

# Rows (chunk · B) per vectorised backward pass and a cap on cotangent elements (chunk · B · D):
# measured on CPU, a few thousand rows keeps the batched products large enough to run at full
# speed while the per-chunk temporaries stay cache- and allocator-friendly (unchunked is slower).
_CHUNK_ROWS = 4096
_CHUNK_ELEMENTS = 1 << 22


def _auto_chunk(batch: int, dim: int) -> int:
    return max(1, min(dim, _CHUNK_ROWS // batch, _CHUNK_ELEMENTS // (batch * dim)))


def exact_trace(
    score_fn: ScoreFn, x: Tensor, *, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """(s(x), tr ∇ₓs(x)) per sample, the trace summed exactly over all D = prod(event) dimensions.

    One forward pass, then vector-Jacobian products with the D basis cotangents e_i, vectorised
    with ``torch.func.vmap`` (``chunk_size`` basis vectors at a time) instead of a Python loop:
    tr J = Σ_i e_iᵀ Jᵀ e_i.  Samples must not interact inside ``score_fn``, so one batched vjp
    gives every sample's row at once.  The result is differentiable (create-graph semantics).
    """
    d = x[0].numel()
    if chunk_size is None:
        chunk = _auto_chunk(x.shape[0], d)
    elif isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    else:
        chunk = int(chunk_size)
    s, vjp_fn = vjp(score_fn, x)
    check_score(s, x)
    basis = torch.eye(d, dtype=x.dtype, device=x.device).reshape(d, 1, *x.shape[1:])
    basis = basis.expand(d, *x.shape)

    def diagonal_entry(e: Tensor) -> Tensor:
        # e_iᵀ Jᵀ e_i for every sample: pick component i of the i-th vjp row.
        return (vjp_fn(e)[0] * e).reshape(x.shape[0], -1).sum(1)

    trace = vmap(diagonal_entry, chunk_size=min(chunk, d))(basis).sum(0)
    return s, trace


def ism(
    score_fn: ScoreFn,
    x: Tensor,
    *,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> Tensor:
    """Implicit score matching, tr ∇ₓs_θ(x) + ½‖s_θ(x)‖² per sample, with the exact trace.

    Hyvärinen (2005), "Estimation of non-normalized statistical models by score matching",
    Theorem 1: integrating by parts, E_p ½‖s_θ − ∇log p‖² = E_p[tr ∇ₓs_θ + ½‖s_θ‖²] + C with C
    free of θ, so this loss needs no knowledge of the true score.  The trace costs D
    vector-Jacobian products, vectorised (see :func:`exact_trace`); for large D prefer
    :func:`~scorematch.objectives.ssm`.

    Args:
        score_fn: ``score_fn(x)`` returning a tensor of x's shape; samples must be independent
            (no batch statistics), since the trace is vectorised over the batch.
        x: batch ``(B, *event)``.
        reduction: ``"mean"`` | ``"sum"`` over the batch, or ``"none"`` for shape ``(B,)``.
        chunk_size: basis vectors per vectorised backward pass (memory versus speed); by
            default about 4096 rows (chunk · B) at a time.
    """
    check_reduction(reduction)
    check_batch(x, "x")
    s, trace = exact_trace(score_fn, x, chunk_size=chunk_size)
    return reduce(trace + 0.5 * sq_norm(s), reduction)
