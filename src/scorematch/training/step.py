"""The arithmetic of one optimizer step: the module the loss sees, gradient accumulation over
micro-batches, mixed precision, the gradient all-reduce over ranks, clipping and the update.

``StepEngine`` builds the training module once: the network, under autocast (``precision``),
wrapped in ``DistributedDataParallel`` under torchrun when the loss is first-order, and compiled
with ``torch.compile`` when asked.  This is the one place that chooses how gradients are
averaged over ranks: DDP for a first-order loss (its bucketed all-reduce overlaps the backward
pass), else the plain module and one explicit all-reduce after backward (``average_gradients``)
for losses that differentiate the model themselves (ISM, SSM, energy models), where DDP's hooks
do not fire and ``torch.compile`` cannot follow (it supports neither double backward nor
compiled functions under ``torch.func`` transforms).

Gradient accumulation: a rank's rows of the global batch are cut into ``grad_accum`` micro-batches
of m_k rows (``torch.tensor_split``: sizes differ by at most one), and micro-batch k's mean loss is
back-propagated with weight m_k / rows.  The summed gradient is then the rank's mean gradient —
the update of one batch ``grad_accum`` times larger — and with DDP only the last micro-batch
all-reduces (``no_sync``).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .distributed import average_gradients, mean_over_ranks
from .precision import Precision

__all__ = ["StepEngine"]

LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]
# Buffers are constants in this package's networks: DDP need not broadcast them before every
# forward pass (the option's name changed in torch 2.13).
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


class StepEngine:
    """How a ``Trainer`` computes and applies one step's gradients.

    Args:
        model: the network (its parameters ``params`` are optimised by ``optimizer``).
        device, world_size: where this rank trains, and how many ranks there are.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see ``training.precision``).
        compile: False, True (``torch.compile`` with its default backend) or a backend name.
        grad_accum: micro-batches per optimizer step.
        first_order: the loss runs one ordinary backward pass through the model (DSM, NCSN,
            continuous DSM, EDM): train through DDP under torchrun, and allow ``compile``.
    """

    def __init__(
        self,
        model: nn.Module,
        params: list[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        world_size: int,
        precision: str = "fp32",
        compile: bool | str = False,
        grad_accum: int = 1,
        first_order: bool = False,
    ) -> None:
        # The values are checked once, by ``TrainingSettings``.
        self.precision = Precision(precision, device)
        self.grad_accum = grad_accum
        self.params, self.optimizer, self.world_size = params, optimizer, world_size
        module = self.precision.wrap(model)
        self.ddp: DistributedDataParallel | None = None
        if first_order and world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(module, device_ids=ids, **_NO_BUFFER_SYNC)
            module = self.ddp
        if compile:
            # Static shapes: a training batch keeps its shape, and dynamic-shape graphs of the
            # U-Net failed to compile in inductor (torch 2.13) once a shared wrapper recompiled.
            backend = {} if compile is True else {"backend": compile}
            module = torch.compile(module, dynamic=False, **backend)
        self.module = module

    @property
    def sync(self) -> str:
        """How gradients are averaged over ranks: ``"ddp"``, ``"all-reduce"`` or ``"none"``."""
        if self.world_size == 1:
            return "none"
        return "ddp" if self.ddp is not None else "all-reduce"

    def gradients(self, loss_fn: LossFn, batch: Tensor, generator: torch.Generator) -> float:
        """Back-propagate the rank's ``batch`` in ``grad_accum`` micro-batches and average the
        gradients over ranks; returns the global batch's mean loss (the same on every rank)."""
        rows = batch.shape[0]
        if self.grad_accum > rows:
            raise ValueError(
                f"grad_accum={self.grad_accum} exceeds the {rows} rows of a batch on this rank"
            )
        total = torch.zeros((), dtype=torch.float64, device=batch.device)
        parts = torch.tensor_split(batch, self.grad_accum) if self.grad_accum > 1 else (batch,)
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            no_sync = self.ddp.no_sync() if self.ddp is not None and not last else None
            with no_sync or contextlib.nullcontext():
                loss = _scalar(loss_fn(self.module, part, generator))
                weight = part.shape[0] / rows
                self.precision.backward(loss * weight if len(parts) > 1 else loss)
            total += weight * loss.detach().to(torch.float64)
        if self.ddp is None:
            average_gradients(self.params, self.world_size)
        return mean_over_ranks(total, self.world_size)

    def clip_and_step(self, grad_clip: float | None) -> tuple[float, bool]:
        """Clip the gradients to global norm ``grad_clip`` (None: only measure it) and update;
        returns ``(norm, ok)``.  ``ok`` is False, and nothing is applied, when the norm is not
        finite — except under fp16, where an overflow is expected now and then: the scaler skips
        that step and lowers its scale."""
        self.precision.unscale(self.optimizer)
        if grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.params if p.grad is not None]
            )
        grad_norm = float(norm)  # the same on every rank: gradients are synchronised
        finite = math.isfinite(grad_norm)
        if not finite and self.precision.scaler is None:
            return grad_norm, False
        self.precision.step(self.optimizer, finite)
        return grad_norm, True

    def state_dict(self) -> dict[str, object]:
        """What a checkpoint stores: the precision and fp16's scaler state."""
        return {"precision": self.precision.name, "grad_scaler": self.precision.state_dict()}

    def load_state_dict(self, state: dict[str, object] | None) -> None:
        """Restore the scaler state of a checkpoint written with the same precision (a
        checkpoint without one, or of another precision, leaves the scaler as it is)."""
        if state and state.get("precision") == self.precision.name:
            self.precision.load_state_dict(state.get("grad_scaler"))


def _scalar(loss: object) -> Tensor:
    """The loss as a 0-d tensor that depends on the parameters, or a one-line ValueError."""
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (use reduction='mean'), got {shape}")
    if not loss.requires_grad:
        raise ValueError(
            "the loss returned by loss_fn does not depend on the model's trainable parameters"
        )
    return loss.reshape(())
