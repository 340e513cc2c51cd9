"""Score-matching objectives: each takes a score function (or model) and a batch, returns a loss.

``esm``, ``ism`` and ``ssm`` work on any unconditional ``score_fn(x)`` (clean data, or data at a
fixed noise level via ``at_time``); ``dsm`` perturbs the batch itself;
``diffusion``, ``edm`` and ``ncsn`` take a model and a process, and ``conditional`` runs them with
labels (label dropout) and on rows with missing cells (the masked objective).  Every objective sums over the
event dimensions of a sample and reduces over the batch with ``reduction="mean" | "sum" | "none"``.
"""

from .conditional import conditional
from .denoising import dsm
from .explicit import esm
from .implicit import ism
from .noise_conditional import diffusion, edm, ncsn
from .sliced import PROJECTIONS, ssm

__all__ = ["PROJECTIONS", "conditional", "diffusion", "dsm", "edm", "esm", "ism", "ncsn", "ssm"]
