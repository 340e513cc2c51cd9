"""Mixed precision for training: ``Precision`` (fp32, bf16 or fp16 autocast, fp16's gradient
scaler) and ``Autocast``, the module wrapper that runs a network under autocast.

Only the network runs in low precision.  ``Autocast`` casts its output back to the input's dtype,
so everything an objective does with the score — squared norms, the Jacobian trace of ISM, SSM's
projections, EDM's c_skip·x + c_out·F skip connection — is computed in the input's precision
(float32), and the objectives that differentiate twice (ISM, SSM, SSM-VR, energy models) see
ordinary float32 tensors: autograd runs each backward op in the dtype of its forward op.  The
weights, the optimizer state and the EMA stay float32 (Micikevicius et al. 2018, "Mixed
Precision Training").  fp16's narrow range needs loss scaling: a ``torch.amp.GradScaler``
multiplies the loss before backward, unscales the gradients before clipping, skips a step whose
gradients overflowed and adapts the scale; bf16 has float32's range and needs none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["PRECISIONS", "Autocast", "Precision"]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Autocast(nn.Module):
    """``module(x, ...)`` run under ``torch.autocast(device_type, dtype)``, its floating-point
    output cast back to x's dtype.  Shares the wrapped module's parameters."""

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.module(x, *args, **kwargs)
        if isinstance(out, Tensor) and out.is_floating_point() and x.is_floating_point():
            out = out.to(x.dtype)
        return out


class Precision:
    """How a training step computes: ``"fp32"`` (as is), ``"bf16"`` or ``"fp16"`` (autocast of
    the network on ``device``; fp16 with a gradient scaler)."""

    def __init__(self, name: str, device: torch.device) -> None:
        if name not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
        self.name = name
        self.device = torch.device(device)
        self.dtype = _DTYPES[name]
        self.scaler = torch.amp.GradScaler(self.device.type) if name == "fp16" else None

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the loss sees: ``model`` itself in fp32, else ``Autocast(model)``."""
        if self.dtype is None:
            return model
        return Autocast(model, self.device.type, self.dtype)

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``, the loss multiplied by the current scale under fp16."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale (fp16), before clipping or reading their norm."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, finite: bool) -> bool:
        """Apply the update; True when applied.  fp16 skips a step whose gradients overflowed
        (``finite`` False) and lowers the scale; fp32/bf16 always step (the caller stops a run
        whose gradients are not finite)."""
        if self.scaler is None:
            optimizer.step()
            return True
        self.scaler.step(optimizer)  # skipped when the unscaled gradients hold an inf/NaN
        self.scaler.update()
        return finite

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's state (JSON-able numbers) for a checkpoint; None without a scaler."""
        if self.scaler is None:
            return None
        state = self.scaler.state_dict()
        return {k: float(v) if isinstance(v, Tensor) else v for k, v in state.items()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore the scaler's state (ignored without a scaler or without a saved state)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))
