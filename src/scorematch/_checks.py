"""Small input checks shared by every module: one clear ``ValueError`` instead of a deep torch trace."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def check_batch(x: Tensor, name: str = "x", *, finite: bool = True) -> Tensor:
    """Require a tensor of shape ``(batch, *event_shape)`` with at least one event dimension."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have shape (batch, *event_shape) with at least 2 dimensions, "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def broadcast_time(t: Tensor | float, x: Tensor, name: str = "t") -> Tensor:
    """Return t as a tensor of shape ``(batch,)`` on x's device and dtype."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t.expand(x.shape[0])
    if t.ndim == 1 and t.shape[0] in (1, x.shape[0]):
        return t.expand(x.shape[0])
    raise ValueError(
        f"{name} must be a scalar or have shape ({x.shape[0]},), got shape {tuple(t.shape)}"
    )


def expand_like(v: Tensor, x: Tensor) -> Tensor:
    """View a per-sample tensor of shape ``(batch,)`` (or a scalar) so it broadcasts against x."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if v.ndim == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


def check_positive(value: float, name: str) -> float:
    value = float(value)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """Apply a loss reduction to per-sample values of shape ``(batch,)``."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def check_positive_int(value: object, name: str) -> int:
    """``value`` as an ``int`` ≥ 1: a Python or NumPy integer; bools and floats (3.0 too) are
    refused, with one message naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_count(value: object, name: str) -> int:
    """``value`` as an ``int`` ≥ 0 (a count that may be zero; same rules as
    ``check_positive_int``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def as_time(t: Tensor | float, like: Tensor | None = None) -> Tensor:
    """t as a floating-point tensor: kept if it is one, else in ``like``'s dtype and device (or the
    default dtype)."""
    if isinstance(t, Tensor):
        return t if t.is_floating_point() else t.to(torch.get_default_dtype())
    if like is not None:
        return torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return torch.as_tensor(t, dtype=torch.get_default_dtype())


def model_device(model: object, generator: torch.Generator | None = None):
    """(device, dtype) of a model: those of its first floating-point parameter or buffer; for a
    model without tensors (a plain function), the generator's device (else the CPU) and the
    default dtype."""
    if isinstance(model, torch.nn.Module):
        tensors = (*model.parameters(), *model.buffers())
        for tensor in tensors:
            if tensor.is_floating_point():
                return tensor.device, tensor.dtype
        if tensors:
            return tensors[0].device, torch.get_default_dtype()
    device = generator.device if generator is not None else torch.device("cpu")
    return device, torch.get_default_dtype()


# -- random numbers ---------------------------------------------------------------------------------
# Every draw happens on the generator's device and is then moved, so that one seed gives the same
# numbers whatever device the data are on.
def draw_device(generator: torch.Generator | None, device) -> torch.device | str | None:
    """Where to draw: the generator's device if there is a generator, else ``device``."""
    return generator.device if generator is not None else device


def randn(shape, generator: torch.Generator | None, *, device=None, dtype=None) -> Tensor:
    """Standard normal numbers of ``shape``, drawn with ``generator`` and placed on ``device``."""
    z = torch.randn(
        tuple(shape), generator=generator, device=draw_device(generator, device), dtype=dtype
    )
    return z if device is None else z.to(device)


def rand(shape, generator: torch.Generator | None, *, device=None, dtype=None) -> Tensor:
    """Uniform numbers in [0, 1) of ``shape``, drawn with ``generator`` and placed on ``device``."""
    u = torch.rand(
        tuple(shape), generator=generator, device=draw_device(generator, device), dtype=dtype
    )
    return u if device is None else u.to(device)


def randint(high: int, shape, generator: torch.Generator | None, *, device=None) -> Tensor:
    """Integers uniform in {0, …, high − 1} of ``shape``, drawn with ``generator``."""
    k = torch.randint(
        int(high), tuple(shape), generator=generator, device=draw_device(generator, device)
    )
    return k if device is None else k.to(device)


def rademacher(shape, generator: torch.Generator | None, *, device=None, dtype=None) -> Tensor:
    """Independent ±1 signs of ``shape`` (E[vvᵀ] = I), drawn with ``generator``."""
    return (
        randint(2, shape, generator, device=device).to(dtype or torch.get_default_dtype()) * 2 - 1
    )


def noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise of x's shape, dtype and device."""
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


# torchdiffeq's methods: the adaptive ones choose their own steps; the others need a step size.
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_SOLVERS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams")


def check_solver(solver: str, *, adaptive: bool = False) -> str:
    """A torchdiffeq method name (only the adaptive ones when ``adaptive``)."""
    names = ADAPTIVE_SOLVERS if adaptive else ADAPTIVE_SOLVERS + FIXED_SOLVERS
    if solver not in names:
        kind = "adaptive solver" if adaptive else "solver"
        raise ValueError(f"unknown {kind} {solver!r}; choose one of {', '.join(names)}")
    return solver
