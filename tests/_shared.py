"""Test fixtures shared by several test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import math

import torch

from scorematch.distributions import GaussianMixture


def mixture() -> GaussianMixture:
    """A 2-D, three-component float64 mixture with correlated components and unequal weights."""
    return GaussianMixture(
        means=[[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]],
        covs=[[[0.5, 0.2], [0.2, 0.3]], [[0.2, 0.0], [0.0, 0.6]], [[0.3, -0.1], [-0.1, 0.3]]],
        weights=[0.5, 0.3, 0.2],
        dtype=torch.float64,
    )


def rotated(angle: float, s1: float, s2: float) -> torch.Tensor:
    """The 2×2 float64 covariance with variances s1, s2 along axes turned by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    r = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return r @ torch.diag(torch.tensor([s1, s2], dtype=torch.float64)) @ r.T


class Reshaped(torch.nn.Module):
    """A flat-vector score model seen as one on (B, 1, 4, 4) images."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, t):
        return self.inner(x.reshape(x.shape[0], -1), t).reshape(x.shape)
