"""How good a model's samples and likelihoods are.

- ``distances``: between two sample sets — ``sliced_wasserstein`` (SW_p), ``wasserstein1``
  (exact, by assignment), ``mmd`` (squared MMD), ``energy_distance``.
- ``coverage``: ``coverage``, the share of real rows whose neighbourhood holds a sample (Naeem
  et al. 2020; the ForestDiffusion paper's figure on tables).
- ``gaussian``: the 2-Wasserstein distance between Gaussians — ``bures_wasserstein``, and
  ``frechet_distance`` of fitted feature sets (FID's formula).
- ``mixture``: ``mixture_error``, samples against a known ``GaussianMixture`` (mode weights and
  per-mode Bures–Wasserstein error, against exact samples' figures).
- ``oracle``: a model against a known ``GaussianMixture`` — ``fisher_divergence``
  E‖s_θ − ∇log p_t‖² at a noise level, and ``nll_gap``, the exact NLL gap (an estimate of KL).
- ``heldout``: ``heldout_nll``, the held-out negative log-likelihood summary.
- ``memorisation``: ``memorisation``, whether samples copy training rows (distance to the closest
  training row, against held-out rows'; the fraction of near-copies) → a ``Memorisation``.

Sample sets have shape ``(batch, *event_shape)`` (events are flattened); the distances return 0-d
tensors, ``mixture_error`` and ``heldout_nll`` dicts of floats.
"""

from .coverage import coverage
from .distances import energy_distance, mmd, sliced_wasserstein, wasserstein1
from .gaussian import bures_wasserstein, frechet_distance
from .heldout import heldout_nll
from .memorisation import Memorisation, memorisation
from .mixture import mixture_error
from .oracle import fisher_divergence, nll_gap

__all__ = [
    "Memorisation",
    "bures_wasserstein",
    "coverage",
    "energy_distance",
    "fisher_divergence",
    "frechet_distance",
    "heldout_nll",
    "memorisation",
    "mixture_error",
    "mmd",
    "nll_gap",
    "sliced_wasserstein",
    "wasserstein1",
]
