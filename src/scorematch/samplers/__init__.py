"""Samplers: every one is ``sampler(model, process, x_init_or_shape, steps=None, *, grid="auto",
generator=None, callback=None, progress=False, denoise=True, **options) -> Samples(x, nfe,
trajectory)`` — the contract is written down in :mod:`scorematch.samplers.base`.

Stochastic: ``euler_maruyama`` (any η ≥ 0), ``reverse_diffusion``, ``ancestral`` (``eta=0`` gives
DDIM), ``predictor_corrector``, ``annealed_langevin``.  Deterministic: ``ode`` (probability flow,
fixed step or adaptive), ``heun`` (EDM, optional churn), ``dpm_solver`` (DPM-Solver++ multistep).
Time grids live in :mod:`scorematch.samplers.grids`; ``grids.resolve`` turns ``grid``/``steps``/
``denoise`` into the explicit times a sampler runs on (``"auto"`` = ``process.default_grid(family)``),
and ``sample`` resolves them once and picks a sampler by name.
"""

from . import grids
from .api import DEFAULT_STEPS, SAMPLERS, get_sampler, resolve_grid, sample
from .base import Samples
from .dpm_solver import dpm_solver, dpm_solver_defaults
from .grids import dpm_recipe, edm_rho, few_step, levels, log_snr, make_grid, resolve, uniform
from .heun import heun
from .langevin import annealed_langevin, langevin_corrector
from .ode import ode
from .sde import ancestral, euler_maruyama, predictor_corrector, reverse_diffusion
from .tuning import TunedGrid, tune_grid

__all__ = [
    "DEFAULT_STEPS",
    "SAMPLERS",
    "Samples",
    "TunedGrid",
    "ancestral",
    "annealed_langevin",
    "dpm_recipe",
    "dpm_solver",
    "dpm_solver_defaults",
    "edm_rho",
    "euler_maruyama",
    "few_step",
    "get_sampler",
    "grids",
    "heun",
    "langevin_corrector",
    "levels",
    "log_snr",
    "make_grid",
    "ode",
    "predictor_corrector",
    "resolve",
    "resolve_grid",
    "reverse_diffusion",
    "sample",
    "tune_grid",
    "uniform",
]
