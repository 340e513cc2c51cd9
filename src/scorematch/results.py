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
    """``a, nfe = result``: the first two fields (the value and the number of model calls).

    A result is not its tensor: ``result.shape`` or ``result[:, 0]`` raise an error that names the
    field holding the tensor (``samples.x``), instead of a bare AttributeError or TypeError.
    """

    def __iter__(self) -> Iterator[object]:
        first, second = fields(self)[:2]  # type: ignore[arg-type]
        yield getattr(self, first.name)
        yield getattr(self, second.name)

    def _value_name(self) -> str:
        return fields(self)[0].name  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        # Only reached for attributes the dataclass does not have.
        if not name.startswith("_") and hasattr(Tensor, name):
            kind = type(self).__name__
            raise AttributeError(
                f"{kind} is not a tensor: its tensor is .{self._value_name()} "
                f"(e.g. result.{self._value_name()}.{name}); it also holds .nfe"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getitem__(self, index: object) -> object:
        raise TypeError(
            f"{type(self).__name__} is not a tensor: index its .{self._value_name()} "
            f"(result.{self._value_name()}[...]), or unpack it: value, nfe = result"
        )


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
