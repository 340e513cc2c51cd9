"""The sampler contract, written once: every sampler in this package has this shape.

    sampler(model, process, x_init_or_shape, steps=None, *, grid="auto", generator=None,
            callback=None, progress=False, denoise=True, return_trajectory=False,
            **method_options) -> Samples(x, nfe, trajectory)

* ``model(x, t) -> ∇ₓ log p_t(x)``, t of shape ``(batch,)``; ``process`` the forward SDE.
* ``x_init_or_shape``: the state at t_max, or a ``(batch, *event)`` shape drawn from the prior.
* ``grid``: a name (``"auto"`` = ``process.default_grid(family)``, the one meaning of "auto", stated
  per process for each sampler family; see :mod:`.grids`), a function ``grid(process, steps)``, or
  an explicit decreasing tensor of times; explicit times imply ``steps``.  Each sampler runs on
  the explicit tensor ``grids.resolve`` makes of these (``sample`` resolves it once, as
  k-diffusion's samplers take ``sigmas``).
* ``steps``: the number of grid intervals t_0 = t_max > … > t_N, N = steps, for every sampler
  (default: the sampler's ``DEFAULT_STEPS``).  How many model calls a step costs is the sampler's
  own (see each docstring); ``Samples.nfe`` counts them exactly.
* ``denoise=True`` (every sampler): end with Tweedie's x̂₀ = E[x₀ | x_{t_N}] = (x + σ² s)/α at the
  last grid time, one more model call.  A grid that ends exactly at t = 0 (k-diffusion's and EDM's
  convention) says the same: its last interval is that x̂₀ step (then ``denoise`` must stay True).
  The x̂₀ step is not reported to the callback nor added to the trajectory.
* ``callback``: called once per step i = 0 … N − 1 with one dict ``{"i", "t", "sigma", "x",
  "denoised"}`` describing the state the step starts from: x at time t = t_i, σ = σ_t/α_t, and
  the model's x̂₀ at (x, t) from the step's first model call (annealed Langevin: once per level).
* ``generator``: the source of all randomness (prior draw and noise); same seed, same samples.
* Sampling runs under ``torch.inference_mode()``; non-finite states stop with a named error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_batch, model_device
from ..results import Samples

__all__ = ["Callback", "CountingModel", "Samples", "ScoreModel", "initial_state"]

ScoreModel = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict], None]


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
