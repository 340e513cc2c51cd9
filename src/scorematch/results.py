"""What the samplers and the likelihood return: small frozen dataclasses, every field real.

Each unpacks as its documented pair ``(value, nfe)`` — ``x, nfe = sm.sample(...)``,
``log_p, nfe = sm.log_likelihood(...)`` — and ``dataclasses.replace`` keeps every field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields

from torch import Tensor

__all__ = ["BitsPerDim", "LogLikelihood", "Samples"]


class _UnpacksAsPair:
    """``a, nfe = result``: the first two fields (the value and the number of model calls)."""

    def __iter__(self) -> Iterator[object]:
        first, second = fields(self)[:2]  # type: ignore[arg-type]
        yield getattr(self, first.name)
        yield getattr(self, second.name)


@dataclass(frozen=True)
class Samples(_UnpacksAsPair):
    """A sampler's output: samples ``x``, the number of model evaluations ``nfe``, and the states
    at the grid times (``trajectory``: steps + 1 tensors from t_max to t_min) when asked for."""

    x: Tensor
    nfe: int
    trajectory: list[Tensor] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LogLikelihood(_UnpacksAsPair):
    """log-density per sample ``(B,)``, the number of batched model calls, the end point x_T of the
    flow when ``return_latent=True`` (else ``None``), and the ODE evaluations of each sample
    ``(B,)`` (their sum is the batch's cost when every sample steps on its own)."""

    log_prob: Tensor
    nfe: int
    latent: Tensor | None = field(default=None, repr=False)
    nfe_per_sample: Tensor | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BitsPerDim(_UnpacksAsPair):
    """Bits per dimension per sample ``(B,)``, the number of ODE evaluations, and the flow's end
    point x_T when ``return_latent=True`` (else ``None``)."""

    bpd: Tensor
    nfe: int
    latent: Tensor | None = field(default=None, repr=False)
