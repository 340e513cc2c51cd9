"""scorematch: score matching and score-based diffusion models in PyTorch."""

from .distributions import Gaussian, GaussianMixture, MixtureScoreModel
from .processes import EDM, VE, VP, Process, SubVP, make_process
from .samplers.base import Samples

__version__ = "0.1.0"

__all__ = [
    "EDM",
    "VE",
    "VP",
    "Gaussian",
    "GaussianMixture",
    "MixtureScoreModel",
    "Process",
    "Samples",
    "SubVP",
    "make_process",
]
