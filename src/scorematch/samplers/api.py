"""One entry point for every sampler: ``sample(model, process, shape, sampler="heun", steps=...)``."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

import torch

from .base import Samples

__all__ = ["DEFAULT_STEPS", "SAMPLERS", "get_sampler", "sample"]

# name -> (module in scorematch.samplers, function)
SAMPLERS: dict[str, tuple[str, str]] = {
    "euler_maruyama": ("sde", "euler_maruyama"),
    "reverse_diffusion": ("sde", "reverse_diffusion"),
    "ancestral": ("sde", "ancestral"),
    "predictor_corrector": ("langevin", "predictor_corrector"),
    "annealed_langevin": ("langevin", "annealed_langevin"),
    "ode": ("ode", "ode"),
    "heun": ("heun", "heun"),
    "dpm_solver": ("dpm_solver", "dpm_solver"),
}


def _default_steps() -> dict[str, int]:
    """Each sampler's own default number of grid intervals (its module's ``DEFAULT_STEPS``)."""
    out = {}
    for name, (module, _) in SAMPLERS.items():
        value = import_module(f"{__package__}.{module}").DEFAULT_STEPS
        out[name] = value[name] if isinstance(value, dict) else value
    return out


# Steps when the caller gives none, from the papers each sampler comes from (score-SDE: 1000;
# NCSN: 10 levels, i.e. 9 intervals, of 100 Langevin steps; EDM: 18; DPM-Solver: 20); ode: 25 RK4
# steps = 100 model calls.
DEFAULT_STEPS: dict[str, int] = _default_steps()


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
    ``steps`` (grid intervals) defaults to ``DEFAULT_STEPS[sampler]``; every other keyword
    (``grid``, ``callback``, ``denoise``, ``order``, ``method``, …) goes to the sampler, whose
    common contract is described in :mod:`scorematch.samplers.base`.  The model's state (train/eval
    mode) is left as it is; sampling runs under ``torch.inference_mode()``.

    Returns ``Samples(x, nfe, trajectory)``.
    """
    function = get_sampler(sampler)
    with torch.inference_mode():
        return function(
            model, process, shape_or_x, steps, generator=generator, progress=progress, **options
        )
