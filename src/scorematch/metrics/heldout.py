"""The held-out negative log-likelihood summary: mean, standard error and bits per dimension."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["heldout_nll"]


def heldout_nll(log_prob: Tensor, *, dims: int | None = None) -> dict[str, float]:
    """Mean negative log-likelihood of held-out samples and its standard error.

    Takes per-sample log-densities (e.g. from ``scorematch.log_likelihood``); with ``dims`` (the
    number of data dimensions) also returns bits per dimension, nll / (dims · ln 2).
    """
    log_prob = torch.as_tensor(log_prob).reshape(-1).to(torch.float64)
    if log_prob.numel() == 0:
        raise ValueError("log_prob is empty")
    if not torch.isfinite(log_prob).all():
        raise ValueError("log_prob contains NaN or infinite values")
    nll = -log_prob
    out = {
        "nll": float(nll.mean()),
        "stderr": float(nll.std() / math.sqrt(nll.numel())) if nll.numel() > 1 else math.nan,
        "n": int(nll.numel()),
    }
    if dims is not None:
        if int(dims) < 1:
            raise ValueError(f"dims must be a positive integer, got {dims}")
        out["bits_per_dim"] = out["nll"] / (int(dims) * math.log(2))
    return out
