"""Conditional generation: imputation of known-entry patterns, class labels and guidance.

* :func:`impute` — draws of a batch's unknown entries given the known ones, with any sampler;
  the conditioning is a score model (:mod:`.known`: ``MaskConditioned`` for a mask-conditional
  network, ``Replacement`` for any model), so no sampler is copied.
* :class:`Guided` — a class-conditional score model with classifier-free guidance.
* The exact oracles: ``GaussianMixture.condition`` and the conditioning keywords of
  ``MixtureScoreModel``.
* Training: ``scorematch.objectives.conditional`` (labels with label dropout; the masked
  objective over observed cells) and :class:`TrainingRows` (rows with NaN gaps and labels for a
  ``Trainer``).
"""

from .guidance import Guided
from .imputation import METHODS, POINT_DRAWS, imputation_method, impute
from .known import KnownEntries, MaskConditioned, Replacement, point_mass_score
from .training import TrainingRows

__all__ = [
    "METHODS",
    "POINT_DRAWS",
    "Guided",
    "KnownEntries",
    "MaskConditioned",
    "Replacement",
    "TrainingRows",
    "imputation_method",
    "impute",
    "point_mass_score",
]
