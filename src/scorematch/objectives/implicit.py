"""Implicit score matching (ISM) with the exact Jacobian trace.

The trace tr ∇ₓs costs D vector-Jacobian products for a general network.  A score function that can
do better offers the cheap-divergence protocol (:class:`CheapDivergence`): a method
``value_and_divergence(x) -> (s(x), tr ∇ₓs(x))`` returning the exact trace per sample ``(B,)``,
differentiable in the parameters like s itself.  :func:`exact_trace` (hence :func:`ism`) asks the
score function for it and uses it when present; a hollow network
(:class:`scorematch.models.HollowMLP`, Chen & Duvenaud 2019) computes it with one backward pass.
``parametrization.at_time`` keeps the offer of a time-conditional model that has
``value_and_divergence(x, t)``.
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.func import vjp, vmap

from .._checks import check_batch, check_reduction, reduce
from ._common import ScoreFn, check_score, score_and_vjps, sq_norm

__all__ = ["VECTORIZE", "CheapDivergence", "NotPerSample", "exact_trace", "ism"]

VECTORIZE = ("auto", "samples", "batch")
_PER_SAMPLE_FROM = 32  # measured crossover (MLP, width 256, batch 256): batch wins at D ≤ 16


# Rows (chunk · B) per vectorised backward pass, and a cap on cotangent elements (chunk · B · D).
# Measured on CPU (MLP, width 256, batch 256): a few thousand rows keeps the batched matrix
# products efficient while the per-chunk temporaries stay cache- and allocator-friendly; unchunked
# is slower.  The whole-batch path prefers 2048 rows, the per-sample path 4096.
_ROWS = {"batch": 2048, "samples": 4096}
_CHUNK_ELEMENTS = 1 << 22


@runtime_checkable
class CheapDivergence(Protocol):
    """A score function x ↦ s(x) that also returns its exact divergence without D backward passes:
    ``value_and_divergence(x) -> (s(x), tr ∇ₓs(x))``, shapes ``x.shape`` and ``(B,)``."""

    def __call__(self, x: Tensor) -> Tensor: ...

    def value_and_divergence(self, x: Tensor) -> tuple[Tensor, Tensor]: ...


def _auto_chunk(batch: int, dim: int, rows: int) -> int:
    return max(1, min(dim, rows // batch, _CHUNK_ELEMENTS // (batch * dim)))


def exact_trace(
    score_fn: ScoreFn,
    x: Tensor,
    *,
    chunk_size: int | None = None,
    vectorize: str = "auto",
) -> tuple[Tensor, Tensor]:
    """(s(x), tr ∇ₓs(x)) per sample, the trace summed exactly over all D = prod(event) dimensions.

    tr J = Σ_i e_iᵀ Jᵀ e_i: one forward pass, then the D vector-Jacobian products with the basis
    cotangents e_i, vectorised (``chunk_size`` basis vectors per batched backward pass) instead
    of a Python loop over dimensions.  The result is differentiable (create-graph semantics).

    ``vectorize="samples"`` maps ``score_fn`` over single samples ``(1, *event)`` with ``vmap``,
    so each cotangent e_i is shared by the whole batch instead of being copied per sample: the
    network's last layer then costs D² rather than B·D² per pass (measured ~10–25% faster for an
    MLP at D ≥ 64).  ``"batch"`` calls ``score_fn`` on the whole batch once (any function whose
    samples do not interact, e.g. one closing over per-sample times) and differentiates it with
    batched reverse-over-reverse autograd.  ``"auto"`` uses
    ``"batch"`` below D = 32 (where the mapping overhead outweighs the saving) and otherwise tries
    ``"samples"``, falling back to ``"batch"`` when ``score_fn`` cannot run per sample.

    A ``score_fn`` with ``value_and_divergence`` (:class:`CheapDivergence`) is asked for the pair
    instead; ``chunk_size`` and ``vectorize`` do not apply then.
    """
    check_batch(x, "x")
    offer = getattr(score_fn, "value_and_divergence", None)
    if callable(offer):
        return _offered(offer, x)
    if vectorize not in VECTORIZE:
        raise ValueError(f"vectorize must be one of {VECTORIZE}, got {vectorize!r}")
    d, b = x[0].numel(), x.shape[0]
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")

    def chunk(path: str) -> int:
        return min(d, int(chunk_size) if chunk_size else _auto_chunk(b, d, _ROWS[path]))

    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    if vectorize == "samples" or (vectorize == "auto" and d >= _PER_SAMPLE_FROM):
        try:
            return _trace_per_sample(score_fn, x, eye, chunk("samples"))
        except (NotPerSample, RuntimeError) as err:
            # Only vmap's own refusals (data-dependent control flow, .item(), ...) and a function
            # that does not act per sample (it closes over batch-sized tensors) fall back; any
            # other error is the caller's and propagates.
            if vectorize == "samples" or not (
                isinstance(err, NotPerSample) or str(err).startswith("vmap")
            ):
                raise
            warnings.warn(
                f"exact_trace: score_fn cannot run per sample under vmap ({_first_line(err)}); "
                "using the whole-batch path (pass vectorize='batch' to skip the attempt)",
                stacklevel=3,
            )
    return _trace_batch(score_fn, x, eye, chunk("batch"))


def _offered(offer, x: Tensor) -> tuple[Tensor, Tensor]:
    s, trace = offer(x)
    check_score(s, x, "value_and_divergence(x)[0]")
    if not isinstance(trace, Tensor) or trace.shape != (x.shape[0],):
        got = tuple(trace.shape) if isinstance(trace, Tensor) else type(trace).__name__
        raise ValueError(f"value_and_divergence(x)[1] must have shape ({x.shape[0]},), got {got}")
    return s, trace


class NotPerSample(ValueError):
    """score_fn, called on one sample under vmap, did not return one sample's score."""


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__


def _trace_batch(score_fn: ScoreFn, x: Tensor, eye: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    d, b = eye.shape[0], x.shape[0]

    def blocks():  # e_i for every sample, ``chunk`` basis vectors per block
        for start in range(0, d, chunk):
            e = eye[start : start + chunk]
            yield e.reshape(e.shape[0], 1, *x.shape[1:]).expand(e.shape[0], *x.shape)

    def diagonal_entries(jtv: Tensor, e: Tensor) -> Tensor:
        # Σ over the block of e_iᵀ Jᵀ e_i: component i of the i-th vjp row, every sample.
        return (jtv * e).reshape(e.shape[0], b, -1).sum((0, 2))

    s, parts = score_and_vjps(score_fn, x, blocks(), diagonal_entries)
    return s, torch.stack(parts).sum(0)


def _trace_per_sample(
    score_fn: ScoreFn, x: Tensor, eye: Tensor, chunk: int
) -> tuple[Tensor, Tensor]:
    d = eye.shape[0]
    basis = eye.reshape(d, 1, *x.shape[1:])  # e_i for one sample, (D, 1, *event)

    def one_sample(xb: Tensor) -> tuple[Tensor, Tensor]:
        xb = xb.unsqueeze(0)
        s, vjp_fn = vjp(score_fn, xb)
        try:
            check_score(s, xb, "score_fn(x) called on one sample (vectorize='samples')")
        except ValueError as err:
            raise NotPerSample(str(err)) from None
        entries = vmap(lambda e: (vjp_fn(e)[0] * e).sum(), chunk_size=chunk)(basis)
        return s.squeeze(0), entries.sum()

    return vmap(one_sample)(x)


def ism(
    score_fn: ScoreFn,
    x: Tensor,
    *,
    reduction: str = "mean",
    chunk_size: int | None = None,
    vectorize: str = "auto",
) -> Tensor:
    """Implicit score matching, tr ∇ₓs_θ(x) + ½‖s_θ(x)‖² per sample, with the exact trace.

    Hyvärinen (2005), "Estimation of non-normalized statistical models by score matching",
    Theorem 1: integrating by parts, E_p ½‖s_θ − ∇log p‖² = E_p[tr ∇ₓs_θ + ½‖s_θ‖²] + C with C
    free of θ, so this loss needs no knowledge of the true score.  The trace costs D
    vector-Jacobian products, vectorised (see :func:`exact_trace`) — or one backward pass when
    the score function offers ``value_and_divergence`` (a hollow network, :class:`CheapDivergence`);
    otherwise, for large D prefer :func:`~scorematch.objectives.ssm`.

    Args:
        score_fn: ``score_fn(x)`` returning a tensor of x's shape; samples must be independent
            (no batch statistics), since the trace is vectorised over the batch.
        x: batch ``(B, *event)``.
        reduction: ``"mean"`` | ``"sum"`` over the batch, or ``"none"`` for shape ``(B,)``.
        chunk_size: basis vectors per vectorised backward pass (memory versus speed); by
            default a few thousand rows (chunk · B) at a time.
        vectorize: ``"auto"``, ``"samples"`` or ``"batch"``, see :func:`exact_trace`.
    """
    check_reduction(reduction)
    s, trace = exact_trace(score_fn, x, chunk_size=chunk_size, vectorize=vectorize)
    return reduce(trace + 0.5 * sq_norm(s), reduction)
