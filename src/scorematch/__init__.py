"""scorematch: score matching and score-based diffusion models in PyTorch.

Objectives (``sm.objectives``), noising processes (``sm.VE``, ``sm.VP``, ``sm.SubVP``, ``sm.EDM``),
samplers (``sm.samplers``, ``sm.sample``), exact likelihood (``sm.log_likelihood``,
``sm.bits_per_dim``), analytic oracles (``sm.Gaussian``, ``sm.GaussianMixture``), metrics,
conditional generation (``sm.impute``, ``sm.Guided``, ``sm.conditional``), score networks
(``sm.models``), their weighted averages (``sm.ScoreEnsemble``), data loading
(``sm.data``), the ``Trainer``, and ``sm.load_run`` (a trained run directory:
:mod:`scorematch.runs`).
"""

from typing import Any

from . import conditional, data, metrics, models, objectives, samplers
from .conditional import Guided, impute
from .data import Standardizer, load_dataset, toy_dataset, toy_mixture
from .distributions import Gaussian, GaussianMixture, MixtureScoreModel
from .energy import EnergyScore
from .ensemble import EnsembleFit, ScoreEnsemble
from .likelihood import bits_per_dim, log_likelihood
from .models import HollowMLP, MLPEnergy, MLPScore, UNet, build_model
from .parametrization import (
    DataPrediction,
    EDMPrecond,
    EpsilonPrediction,
    ScorePrediction,
    at_time,
    wrap,
)
from .processes import EDM, VE, VP, NoiseLevels, Process, SigmaClock, SubVP, make_process
from .results import BitsPerDim, LogLikelihood, Samples
from .samplers import sample
from .training import Trainer, TrainingDiverged, TrainResult, load_checkpoint

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``sm.load_run``, imported on first use: the run pipeline (plots, YAML, the CLI's defaults)
    is not needed to use the library, and importing it lazily keeps ``import scorematch`` light."""
    if name == "load_run":
        from .runs import load_run

        return load_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EDM",
    "VE",
    "VP",
    "BitsPerDim",
    "DataPrediction",
    "EDMPrecond",
    "EnergyScore",
    "EnsembleFit",
    "EpsilonPrediction",
    "Gaussian",
    "GaussianMixture",
    "Guided",
    "HollowMLP",
    "LogLikelihood",
    "MLPEnergy",
    "MLPScore",
    "MixtureScoreModel",
    "NoiseLevels",
    "Process",
    "Samples",
    "ScoreEnsemble",
    "ScorePrediction",
    "SigmaClock",
    "Standardizer",
    "SubVP",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "UNet",
    "at_time",
    "bits_per_dim",
    "build_model",
    "conditional",
    "data",
    "impute",
    "load_checkpoint",
    "load_dataset",
    "load_run",
    "log_likelihood",
    "make_process",
    "metrics",
    "models",
    "objectives",
    "sample",
    "samplers",
    "toy_dataset",
    "toy_mixture",
    "wrap",
]
