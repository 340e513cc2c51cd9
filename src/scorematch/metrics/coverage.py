"""Coverage: how much of the data's support a model's samples reach (Naeem et al. 2020, "Reliable
Fidelity and Diversity Metrics for Generative Models", ICML), as the ForestDiffusion paper uses it
on tables (Jolicoeur-Martineau, Fatras & Kachman, AISTATS 2024).

Each real row r gets a ball whose radius is the distance to its k-th nearest other real row; r is
*covered* when some sample lies inside it.  Coverage is the share of real rows covered: 1 when the
samples reach every region the data occupy, lower when they drop modes or regions; unlike
precision-type figures it is not fooled by samples piled on a few real rows.  k follows the
ForestDiffusion code: the smallest k at which the real rows cover themselves at 95 %, plus one.
Distances are L1 (on a table: the Gower distance, numbers min–max scaled, labels one-hot ÷ 2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import paired_samples

__all__ = ["coverage"]

SELF_COVERAGE = 0.95  # the real rows' own coverage that sets k


def coverage(real: Tensor, fake: Tensor, *, reduction: str = "mean") -> Tensor:
    """Share of ``real`` rows with a ``fake`` row closer (L1) than their k-th nearest other real
    row (module doc).  ``reduction="none"``: each real row's 0/1 (float64 on the CPU; their mean
    is the coverage); ``"mean"``: a 0-d tensor.  Needs at least 3 real rows."""
    real, fake = paired_samples(real, fake)
    if real.shape[0] < 3:
        raise ValueError(f"coverage needs at least 3 real rows, got {real.shape[0]}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    r, f = real.detach().double().cpu(), fake.detach().double().cpu()
    within = torch.cdist(r, r, p=1).sort(dim=1).values  # column 0: the row itself
    nearest_fake = torch.cat([torch.cdist(block, f, p=1).min(1).values for block in r.split(512)])
    zero = torch.zeros(r.shape[0], dtype=torch.float64)
    k = 1
    while k < r.shape[0] - 2 and float((zero < within[:, k]).double().mean()) < SELF_COVERAGE:
        k += 1
    covered = (nearest_fake < within[:, k + 1]).double()
    return covered if reduction == "none" else covered.mean()
