"""What every sampler shares: the result type, the starting point and the model-call counter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._checks import check_batch

ScoreModel = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict], None]


@dataclass
class Samples:
    """A sampler's output: final samples ``x``, the number of model evaluations ``nfe``, and the
    states visited (``trajectory``, a list of tensors from x_T to x_0) when asked for."""

    x: Tensor
    nfe: int
    trajectory: list[Tensor] | None = field(default=None, repr=False)


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


def initial_state(
    model, process, x_init_or_shape, generator: torch.Generator | None = None
) -> Tensor:
    """The starting point: the given tensor, or a prior sample of the given ``(batch, *event)`` shape."""
    if isinstance(x_init_or_shape, Tensor):
        return check_batch(x_init_or_shape, "x_init")
    shape = tuple(int(s) for s in x_init_or_shape)
    device, dtype = model_device(model, generator)
    return process.prior_sample(shape, generator=generator, device=device, dtype=dtype)


class CountingModel:
    """Wraps a score model and counts its calls (NFE = model evaluations, batch-wise)."""

    def __init__(self, model: ScoreModel) -> None:
        self.model = model
        self.nfe = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.model(x, t)


def check_steps(steps: int) -> int:
    if int(steps) != steps or int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    return int(steps)
