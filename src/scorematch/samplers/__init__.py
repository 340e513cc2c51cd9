"""Samplers: every one is ``sampler(model, process, x_init_or_shape, steps, *, generator=None,
callback=None, progress=False, **options) -> Samples(x, nfe, trajectory)``.

Stochastic: ``euler_maruyama``, ``reverse_diffusion``, ``ancestral`` (``eta=0`` gives DDIM),
``predictor_corrector``, ``annealed_langevin``.  Deterministic: ``ode`` (probability flow, fixed step
or adaptive), ``heun`` (EDM, optional churn), ``dpm_solver`` (DPM-Solver++ multistep).
Time grids live in :mod:`scorematch.samplers.grids`; ``sample`` picks a sampler by name.
"""

from . import grids
from .api import SAMPLERS, get_sampler, sample
from .base import Samples
from .dpm_solver import dpm_solver
from .edm import heun
from .grids import edm_rho, log_snr, make_grid, uniform
from .langevin import annealed_langevin, langevin_corrector, predictor_corrector
from .ode import ode
from .sde import ancestral, euler_maruyama, reverse_diffusion

__all__ = [
    "SAMPLERS",
    "Samples",
    "ancestral",
    "annealed_langevin",
    "dpm_solver",
    "edm_rho",
    "euler_maruyama",
    "get_sampler",
    "grids",
    "heun",
    "langevin_corrector",
    "log_snr",
    "make_grid",
    "ode",
    "predictor_corrector",
    "reverse_diffusion",
    "sample",
    "uniform",
]
