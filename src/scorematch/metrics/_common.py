"""What every sample measure shares: checking and flattening sample sets."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_batch

__all__ = ["flatten_samples", "paired_samples"]


def flatten_samples(x: Tensor, name: str) -> Tensor:
    """Check a sample set ``(N, *event)`` and view it as ``(N, D)``."""
    check_batch(x, name)
    return x.reshape(x.shape[0], -1)


def paired_samples(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten both sample sets to ``(N, D)``, ``(M, D)`` in a common floating dtype."""
    x, y = flatten_samples(x, "x"), flatten_samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same number of features per sample, got {x.shape[1]} and {y.shape[1]}"
        )
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype)
