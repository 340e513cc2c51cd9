"""Energy-based score models: s(x) = −∇ₓE(x), the normaliser Z dropping out of the score."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torch.func import grad

from ._checks import check_batch

__all__ = ["EnergyScore"]


class EnergyScore(nn.Module):
    """Wrap an energy network E(x) (or E(x, t)) as the score model s(x) = −∇ₓE(x).

    For p(x) = e^{−E(x)}/Z, ∇ₓ log p = −∇ₓE because Z does not depend on x (LeCun et al. 2006,
    "A Tutorial on Energy-Based Learning"; Song & Kingma 2021, "How to Train Your Energy-Based
    Models").  The gradient is taken with ``torch.func.grad`` of the summed energy (samples are
    independent, so the sum's gradient holds every sample's own gradient).  The score is
    differentiable in x and in the network's parameters to any order, so ISM/SSM/DSM can train E,
    and it composes with ``torch.func`` transforms (``vmap``, ``vjp``, ``jacrev``); it also works
    under ``torch.no_grad`` and ``torch.inference_mode``.

    Args:
        energy_net: called as ``energy_net(x)`` or ``energy_net(x, t)``, returning energies of
            shape ``(B,)`` or ``(B, 1)``.
    """

    def __init__(self, energy_net: Callable[..., Tensor]) -> None:
        super().__init__()
        if not callable(energy_net):
            raise ValueError(f"energy_net must be callable, got {type(energy_net).__name__}")
        self.energy_net = energy_net

    def energy(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        """E(x) (or E(x, t)) per sample, shape ``(B,)``."""
        e = self.energy_net(x) if t is None else self.energy_net(x, t)
        b = x.shape[0]
        if isinstance(e, Tensor) and e.shape == (b, 1):
            e = e.squeeze(1)
        if not isinstance(e, Tensor) or e.shape != (b,):
            got = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
            raise ValueError(
                f"energy_net must return energies of shape ({b},) or ({b}, 1), got {got}"
            )
        return e

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        """s(x) = −∇ₓE(x) (or −∇ₓE(x, t)), shape of x."""
        check_batch(x, "x", finite=False)
        return -grad(lambda y: self.energy(y, t).sum())(x)
