"""Sliced score matching (SSM and SSM-VR): the Jacobian trace replaced by random projections."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_batch, check_positive_int, check_reduction, rademacher, randn, reduce
from ._common import ScoreFn, score_and_vjps, sq_norm

__all__ = ["PROJECTIONS", "projections", "ssm"]

PROJECTIONS = ("gaussian", "rademacher", "sphere")


def projections(
    n: int,
    x: Tensor,
    kind: str = "gaussian",
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """n random directions per sample, shape ``(n, B, *event)``, each with E[v vᵀ] = I.

    ``"gaussian"``: v ~ N(0, I); ``"rademacher"``: independent ±1 entries (v_i² = 1 exactly);
    ``"sphere"``: uniform on the sphere of radius √D (‖v‖² = D exactly).
    """
    if kind not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {kind!r}")
    shape = (check_positive_int(n, "n_projections"), *x.shape)
    if kind == "rademacher":
        return rademacher(shape, generator, device=x.device, dtype=x.dtype)
    v = randn(shape, generator, device=x.device, dtype=x.dtype)
    if kind == "sphere":
        flat = v.reshape(shape[0], x.shape[0], -1)
        radius = math.sqrt(flat.shape[-1])
        v = (flat * (radius / flat.norm(dim=-1, keepdim=True))).reshape(shape)
    return v


def ssm(
    score_fn: ScoreFn,
    x: Tensor,
    *,
    n_projections: int = 1,
    projection: str = "gaussian",
    variance_reduced: bool = False,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Sliced score matching, E_v[vᵀ∇ₓs_θ(x) v + ½(vᵀs_θ(x))²] per sample (SSM-VR: ½‖s_θ(x)‖²).

    Song, Garg, Shi & Ermon (2019), "Sliced Score Matching: A Scalable Approach to Density and
    Score Estimation".  With E[v vᵀ] = I both expectations equal the implicit
    (Hyvärinen) objective tr ∇ₓs + ½‖s‖²; the variance-reduced form integrates the second term
    out analytically.  The expectation over v is estimated with ``n_projections`` directions per
    sample.  Cost: one forward pass and one vector-Jacobian product per projection (the products
    share the forward pass and are vectorised over projections).

    Args:
        score_fn: ``score_fn(x)`` returning a tensor of x's shape; samples independent.
        x: batch ``(B, *event)``.
        n_projections: directions per sample (≥ 1).
        projection: ``"gaussian"``, ``"rademacher"`` or ``"sphere"`` (radius √D), see
            :func:`projections`.
        variance_reduced: use ½‖s‖² in place of ½(vᵀs)² (SSM-VR).
        generator: source of the random directions.
        reduction: ``"mean"`` | ``"sum"`` over the batch, or ``"none"`` for shape ``(B,)``.
    """
    check_reduction(reduction)
    check_batch(x, "x")
    v = projections(n_projections, x, projection, generator=generator)
    m, b = v.shape[0], x.shape[0]

    def quadratic_form(jtv: Tensor, v: Tensor) -> Tensor:
        return (jtv * v).reshape(m, b, -1).sum((0, 2))  # Σ over projections of vᵀJᵀv = vᵀJv

    s, (vjv,) = score_and_vjps(score_fn, x, [v], quadratic_form)
    if variance_reduced:
        loss = 0.5 * sq_norm(s) + (vjv / m if m > 1 else vjv)
    else:
        loss = vjv + 0.5 * (s * v).reshape(m, b, -1).sum(-1).square().sum(0)
        loss = loss / m if m > 1 else loss
    return reduce(loss, reduction)
