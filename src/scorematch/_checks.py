"""Small input checks shared by every module: one clear ``ValueError`` instead of a deep torch trace."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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


def model_device(
    model, generator: torch.Generator | None = None
) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of a model's parameters or buffers (the generator's device if it has none)."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device, (
                tensor.dtype if tensor.is_floating_point() else torch.get_default_dtype()
            )
    device = generator.device if generator is not None else torch.device("cpu")
    return device, torch.get_default_dtype()


def randn(
    shape, generator: torch.Generator | None, *, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``: the same
    seed gives the same numbers whatever device the data lives on."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)
