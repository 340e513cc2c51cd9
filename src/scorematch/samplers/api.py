"""One entry point for every sampler: ``sample(model, process, shape, sampler="heun", steps=...)``."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

import torch

from .base import Samples

__all__ = ["DEFAULT_STEPS", "SAMPLERS", "get_sampler", "sample"]

# name -> (module in scorematch.samplers, function); imported on first use, so one sampler family's
# module never needs another's.
SAMPLERS: dict[str, tuple[str, str]] = {
    "euler_maruyama": ("sde", "euler_maruyama"),
    "reverse_diffusion": ("sde", "reverse_diffusion"),
    "ancestral": ("sde", "ancestral"),
    "predictor_corrector": ("langevin", "predictor_corrector"),
    "annealed_langevin": ("langevin", "annealed_langevin"),
    "ode": ("ode", "ode"),
    "heun": ("edm", "heun"),
    "dpm_solver": ("dpm_solver", "dpm_solver"),
}

# Steps used when the caller gives none: the values of the papers each sampler comes from
# (score-SDE: 1000 steps; NCSN: 100 Langevin steps per level; EDM: 18 steps = 35 NFE;
# DPM-Solver: 20 steps).  ode: 25 RK4 steps = 100 NFE.
DEFAULT_STEPS: dict[str, int] = {
    "euler_maruyama": 1000,
    "reverse_diffusion": 1000,
    "ancestral": 1000,
    "predictor_corrector": 1000,
    "annealed_langevin": 100,
    "ode": 25,
    "heun": 18,
    "dpm_solver": 20,
}


def get_sampler(name: str) -> Callable[..., Samples]:
    """The sampler function registered under ``name`` (see ``SAMPLERS``)."""
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    module, function = SAMPLERS[name]
    return getattr(import_module(f"{__package__}.{module}"), function)


def sample(
    model,
    process,
    shape_or_x,
    *,
    sampler: str = "heun",
    steps: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    **options,
) -> Samples:
    """Draw samples by reversing ``process`` with the score ``model``, using a sampler chosen by name.

    ``sample(model, process, (64, 2))`` draws 64 two-dimensional samples with EDM's Heun sampler
    (Karras et al. 2022).  ``shape_or_x`` is a ``(batch, *event)`` shape (start from the prior,
    drawn with ``generator``) or the starting tensor at t_max.  ``sampler`` is one of ``SAMPLERS``;
    ``steps`` defaults to ``DEFAULT_STEPS[sampler]``; every other keyword (``callback``, ``grid``,
    ``denoise``, ``order``, ``method``, …) goes to the sampler.  The model's state (train/eval
    mode) is left as it is; sampling runs under ``torch.inference_mode()``.

    Returns ``Samples(x, nfe, trajectory)``.
    """
    function = get_sampler(sampler)
    if steps is None:
        steps = DEFAULT_STEPS[sampler]
    with torch.inference_mode():
        return function(
            model, process, shape_or_x, steps, generator=generator, progress=progress, **options
        )
