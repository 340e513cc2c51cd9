"""Score-matching objectives: each takes a score function (or model) and a batch, returns a loss.

``esm``, ``ism`` and ``ssm`` work on any unconditional ``score_fn(x)`` (clean data, or data at a
fixed noise level via ``at_time``); ``dsm`` perturbs the batch itself.  Every objective sums over the
event dimensions of a sample and reduces over the batch with ``reduction="mean" | "sum" | "none"``.
"""

from .denoising import dsm
from .explicit import esm
from .implicit import ism
from .noise_conditional import diffusion, edm, ncsn
from .sliced import PROJECTIONS, ssm

__all__ = ["PROJECTIONS", "diffusion", "dsm", "edm", "esm", "ism", "ncsn", "ssm"]
