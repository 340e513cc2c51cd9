"""``impute``: draws of a batch's unknown entries given its known ones, with any sampler.

The conditioned score model (:mod:`.known`) is handed to the sampler as it is; nothing here steps
a sampler itself.  Known entries come back unchanged, bit for bit (they are copied from the input
after sampling; the sampler ends at them only up to round-off).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_batch, check_positive_int
from ..parametrization import conditioning_of
from ..samplers import sample
from .known import KnownEntries, MaskConditioned, Replacement

__all__ = ["METHODS", "POINT_DRAWS", "imputation_method", "impute"]

# Draws behind a point imputation (their mean) and its 90 % interval: on wine the RMSE of the mean
# levels off from 10-20 draws and the interval's coverage settles from about 50
# (benchmarks/results/imputation.md, "How many draws").
POINT_DRAWS = 50

METHODS: dict[str, type[KnownEntries]] = {
    "conditional": MaskConditioned,
    "replacement": Replacement,
}


def imputation_method(model, method: str = "auto") -> str:
    """The method ``impute`` uses: ``"auto"`` is ``"conditional"`` for a mask-conditional model
    (exact given its score; benchmarks/results/imputation.md) and ``"replacement"`` otherwise."""
    if method == "auto":
        return "conditional" if "mask" in conditioning_of(model) else "replacement"
    if method not in METHODS:
        raise ValueError(
            f"unknown imputation method {method!r}; choose auto or {', '.join(METHODS)}"
        )
    return method


def impute(
    model,
    process,
    x: Tensor,
    known_mask: Tensor,
    *,
    method: str = "auto",
    sampler: str = "heun",
    steps: int | None = None,
    draws: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    **sampler_options,
) -> Tensor:
    """Sample the unknown entries of each row of ``x`` given its known entries.

    The rows are conditioned by ``method`` (:mod:`scorematch.conditional.known`: ``"conditional"``
    for a mask-conditional network, ``"replacement"`` for any score model; ``"auto"`` picks the
    first when the model can) and drawn by reversing ``process`` with any sampler of
    :func:`scorematch.sample`.  Each draw starts from the prior, its known coordinates at their
    noised law α_T v + (prior noise).  A row with nothing known is a plain sample; a row with
    everything known comes back as it is.

    Args:
        model: score model (a mask-conditional one for ``method="conditional"``).
        process: the forward process the model was trained on.
        x: ``(B, *event)`` rows; unknown entries may hold anything (NaN included).
        known_mask: booleans of x's shape (or of its event shape, for every row), True = known.
            Known entries must be finite.
        method: ``"auto"``, ``"conditional"`` or ``"replacement"``.
        sampler, steps, sampler_options: the sampler (``scorematch.samplers.SAMPLERS``), its
            grid intervals (default: its own) and options such as ``grid``.
        draws: None for one imputation of x's shape; K for K independent ones, ``(K, B, *event)``.
        generator: the source of all randomness.
    """
    check_batch(x, "x", finite=False)
    mask = torch.as_tensor(known_mask, device=x.device)
    if mask.dtype != torch.bool:
        raise ValueError(f"known_mask must be a boolean tensor, got {mask.dtype}")
    if mask.shape == x.shape[1:]:
        mask = mask.expand(x.shape)
    if mask.shape != x.shape:
        raise ValueError(
            f"known_mask must have x's shape {tuple(x.shape)} or its event shape, got "
            f"{tuple(mask.shape)}"
        )
    if not bool(torch.isfinite(x[mask]).all()):
        raise ValueError("x has NaN or infinite values in known entries (known_mask True)")
    method = imputation_method(model, method)
    k = 1 if draws is None else check_positive_int(draws, "draws")
    rows = x.repeat(k, *([1] * (x.ndim - 1)))
    row_mask = mask.repeat(k, *([1] * (x.ndim - 1)))
    known = torch.where(row_mask, rows, torch.zeros_like(rows))
    conditioned = METHODS[method](model, process, known, row_mask)
    start = process.prior_sample(rows.shape, generator=generator, device=x.device, dtype=x.dtype)
    alpha_max = float(process.marginal(torch.tensor(process.t_max, dtype=torch.float64))[0])
    start = start + alpha_max * known
    out = sample(
        conditioned, process, start, sampler=sampler, steps=steps, generator=generator,
        progress=progress, **sampler_options,
    ).x  # fmt: skip
    out = torch.where(row_mask, rows, out)
    return out if draws is None else out.reshape(k, *x.shape)
