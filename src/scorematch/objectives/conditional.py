"""Conditional training: labels with label dropout, and the masked objective over observed cells.

``conditional(model, process, x, ...)`` runs a noise-conditional objective (``edm``, ``diffusion``
or ``ncsn``) on a model that is told what each row is conditioned on:

* **labels** (``label=``): with probability ``label_dropout`` a row's label is replaced by the
  "no label" token (−1), so one network learns s(x, t | y) and s(x, t), the two scores of
  classifier-free guidance (Ho & Salimans 2022).
* **masks** (a mask-conditional model): each row's observed cells O (``observed``, default the
  finite entries of x — NaN marks a missing cell) are split at random into known cells K and
  modelled cells M = O \\ K; the model receives the clean values on K, the mask K and the absent
  cells A = ¬O (``model(x_t, t, known=x, mask=K, absent=A)``) and the loss sums over M only
  (CSDI, Tashiro et al. 2021, §4.2, here with the absent cells named).  The known fraction is drawn
  per row, r ~ U(0, 1), each observed cell then known with probability r, so every pattern —
  nothing known (plain generation) included — is trained.

Why the minimiser is the true conditional score: for a fixed pattern (K, M, A) the loss is the
denoising score-matching loss of the law of x_M given x₀,K, whose minimiser is
∇ log p_t(x_M | x₀,K) (Vincent 2011), the absent cells integrated out.  If cells are missing at
random (the pattern independent of the values), the rows with a pattern are draws of that law,
so the minimiser over every pattern is the conditional score of the complete-data law — the score
a ``MaskConditioned`` sampler needs.  (Under values-dependent missingness it is not.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_batch, rand
from ..parametrization import conditioning_of
from .noise_conditional import diffusion, edm, ncsn

__all__ = ["BASE_OBJECTIVES", "conditional", "conditioning_masks"]

BASE_OBJECTIVES = {"edm": edm, "diffusion": diffusion, "ncsn": ncsn}


def conditioning_masks(
    observed: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(known K, modelled M) for a batch of observed-cell masks: r ~ U(0, 1) per row, each
    observed cell known with probability r, the other observed cells modelled.  Draws two uniform
    tensors from ``generator`` (r, then one per cell), in that order."""
    r = rand((observed.shape[0],), generator, device=observed.device, dtype=torch.float64)
    u = rand(observed.shape, generator, device=observed.device, dtype=torch.float64)
    known = observed & (u < r.reshape(-1, *([1] * (observed.ndim - 1))))
    return known, observed & ~known


def conditional(
    model,
    process,
    x: Tensor,
    *,
    objective: str = "edm",
    observed: Tensor | None = None,
    label: Tensor | None = None,
    label_dropout: float = 0.0,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    **options,
) -> Tensor:
    """A noise-conditional objective with labels and/or masks (see the module docstring).

    Args:
        model: a score model; a mask-conditional one is trained with random known/modelled
            splits of the observed cells, any other one on complete rows only.
        process: the process (for ``ncsn``, its ``NoiseLevels``).
        x: ``(B, *event)`` rows; NaN marks a missing cell unless ``observed`` is given.
        objective: ``"edm"`` (default), ``"diffusion"`` or ``"ncsn"``; ``options`` go to it
            (``weighting``, ``P_mean``, ...).
        observed: booleans of x's shape, True where the cell was observed (default: finite x).
        label: ``(B,)`` integer labels (−1: none) for a model built with ``num_classes``.
        label_dropout: probability of replacing a label by −1 (drawn first, from ``generator``).
        generator: the source of every draw (labels, masks, then the objective's own).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    if objective not in BASE_OBJECTIVES:
        raise ValueError(
            f"unknown objective {objective!r}; choose one of {', '.join(BASE_OBJECTIVES)}"
        )
    check_batch(x, "x", finite=False)
    observed = torch.isfinite(x) if observed is None else observed.to(device=x.device)
    if observed.shape != x.shape or observed.dtype != torch.bool:
        raise ValueError(f"observed must be booleans of x's shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x[observed]).all()):
        raise ValueError("x has NaN or infinite values in observed cells")
    takes = conditioning_of(model)
    cond: dict[str, Tensor] = {}
    if label is not None:
        if "label" not in takes:
            raise ValueError(f"{type(model).__name__} takes no labels (build it with num_classes)")
        cond["label"] = _dropped(label, label_dropout, x, generator)
    elif label_dropout:
        raise ValueError("label_dropout needs labels (label=...)")
    clean = torch.where(observed, x, torch.zeros_like(x))
    cells = None
    if "mask" in takes:
        known, cells = conditioning_masks(observed, generator)
        cond.update(known=clean, mask=known, absent=~observed)
    elif not bool(observed.all()):
        raise ValueError(
            f"x has {int((~observed).sum())} missing cells: training on rows with gaps needs a "
            "mask-conditional network (mask_conditional=True)"
        )

    def bound(x_t: Tensor, t: Tensor) -> Tensor:
        return model(x_t, t, **cond)

    return BASE_OBJECTIVES[objective](
        bound, process, clean, generator=generator, reduction=reduction, cells=cells, **options
    )


def _dropped(label: Tensor, p: float, x: Tensor, generator) -> Tensor:
    """Labels with each one replaced by −1 (no label) with probability p."""
    label = torch.as_tensor(label, device=x.device)
    if label.shape != (x.shape[0],) or label.is_floating_point():
        raise ValueError(
            f"label must be integers of shape ({x.shape[0]},), got {label.dtype} {tuple(label.shape)}"
        )
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"label_dropout must be in [0, 1), got {p}")
    if p == 0:
        return label
    drop = rand(label.shape, generator, device=x.device, dtype=torch.float64) < p
    return torch.where(drop, torch.full_like(label, -1), label)
