"""One entry point for every sampler: ``sample(model, process, shape, sampler="heun", steps=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .base import Samples
from .dpm_solver import DEFAULT_STEPS as DPM_STEPS
from .dpm_solver import FAMILY as DPM_FAMILY
from .dpm_solver import dpm_solver
from .grids import resolve
from .heun import DEFAULT_STEPS as HEUN_STEPS
from .heun import FAMILY as HEUN_FAMILY
from .heun import heun
from .langevin import DEFAULT_STEPS as LANGEVIN_STEPS
from .langevin import FAMILY as LANGEVIN_FAMILY
from .langevin import annealed_langevin
from .ode import DEFAULT_STEPS as ODE_STEPS
from .ode import FAMILY as ODE_FAMILY
from .ode import ode
from .sde import DEFAULT_STEPS as SDE_STEPS
from .sde import FAMILY as SDE_FAMILY
from .sde import ancestral, euler_maruyama, predictor_corrector, reverse_diffusion

__all__ = ["DEFAULT_STEPS", "SAMPLERS", "get_sampler", "resolve_grid", "sample"]


class _Entry(NamedTuple):
    function: Callable[..., Samples]
    family: str  # the sampler family whose default grid "auto" is (Process.default_grid)
    default_steps: int


# Steps when the caller gives none, from the papers each sampler comes from (score-SDE: 1000;
# NCSN: 10 levels, i.e. 9 intervals, of 100 Langevin steps; EDM: 18; DPM-Solver: 20); ode: 25 RK4
# steps = 100 model calls.
_TABLE: dict[str, _Entry] = {
    "euler_maruyama": _Entry(euler_maruyama, SDE_FAMILY, SDE_STEPS),
    "reverse_diffusion": _Entry(reverse_diffusion, SDE_FAMILY, SDE_STEPS),
    "ancestral": _Entry(ancestral, SDE_FAMILY, SDE_STEPS),
    "predictor_corrector": _Entry(predictor_corrector, SDE_FAMILY, SDE_STEPS),
    "annealed_langevin": _Entry(annealed_langevin, LANGEVIN_FAMILY, LANGEVIN_STEPS),
    "ode": _Entry(ode, ODE_FAMILY, ODE_STEPS),
    "heun": _Entry(heun, HEUN_FAMILY, HEUN_STEPS),
    "dpm_solver": _Entry(dpm_solver, DPM_FAMILY, DPM_STEPS),
}
# name -> sampler function, and name -> its default number of grid intervals
SAMPLERS: dict[str, Callable[..., Samples]] = {k: e.function for k, e in _TABLE.items()}
DEFAULT_STEPS: dict[str, int] = {k: e.default_steps for k, e in _TABLE.items()}


def get_sampler(name: str) -> Callable[..., Samples]:
    """The sampler function registered under ``name`` (see ``SAMPLERS``)."""
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def resolve_grid(
    sampler: str,
    process,
    steps: int | None = None,
    *,
    grid="auto",
    denoise: bool = True,
) -> Tensor:
    """The explicit float64 times ``sampler`` runs on for these ``grid``/``steps``/``denoise``
    (:func:`~.grids.resolve` with the sampler's family and default steps): ending with 0 when the
    last step is x̂₀.  Passing the result as ``grid=`` gives the same samples."""
    entry = _TABLE[get_sampler(sampler).__name__]
    return resolve(
        grid,
        process,
        steps,
        family=entry.family,
        default_steps=entry.default_steps,
        denoise=denoise,
        min_points=1 if entry.family == LANGEVIN_FAMILY else 2,
    )


def sample(
    model,
    process,
    shape_or_x,
    *,
    sampler: str = "heun",
    steps: int | None = None,
    grid="auto",
    denoise: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = False,
    **options,
) -> Samples:
    """Draw samples by reversing ``process`` with the score ``model``, using a sampler chosen by name.

    ``sample(model, process, (64, 2))`` draws 64 two-dimensional samples with EDM's Heun sampler
    (Karras et al. 2022).  ``shape_or_x`` is a ``(batch, *event)`` shape (start from the prior,
    drawn with ``generator``) or the starting tensor at t_max.  ``sampler`` is one of ``SAMPLERS``;
    ``grid``/``steps``/``denoise`` are resolved here, once, into the explicit times the sampler
    runs on (``resolve_grid``: ``steps`` grid intervals, default ``DEFAULT_STEPS[sampler]``;
    ``grid="auto"`` is ``process.default_grid`` of the sampler's family); every other keyword
    (``callback``, ``order``, ``method``, …) goes to the sampler, whose common contract is
    described in :mod:`scorematch.samplers.base`.  The model's state (train/eval mode) is left as it
    is; sampling runs under ``torch.inference_mode()``.

    Returns ``Samples(x, nfe, trajectory)``.
    """
    function = get_sampler(sampler)
    times = resolve_grid(sampler, process, steps, grid=grid, denoise=denoise)
    with torch.inference_mode():
        return function(
            model,
            process,
            shape_or_x,
            grid=times,
            denoise=denoise,
            generator=generator,
            progress=progress,
            **options,
        )
