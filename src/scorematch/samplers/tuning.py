"""Fit the time grid of the default deterministic sampler to one trained model (LD3-style).

Chen et al. 2024 ("Learning to Discretize Denoising Diffusion ODEs", LD3) fit the NFE − 1 times of
a few-step solver to a model by making its output, from the same starting noise, match a many-step
reference solution of the same probability-flow ODE.  ``tune_grid`` does that for ``dpm_solver``
with its defaults (UniPC-2, final x̂₀): a deterministic, derivative-free search (scipy's Powell)
over the grid's log noise levels, on a few hundred prior draws fixed by the generator.  The result
is an explicit grid every sampler accepts, storable as JSON (``TunedGrid.to_dict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import check_positive_int
from .base import initial_state
from .dpm_solver import dpm_solver
from .grids import dpm_recipe

__all__ = ["TunedGrid", "tune_grid"]


@dataclass(frozen=True)
class TunedGrid:
    """A grid fitted to a model: ``times`` (float64, t_max > … > t_N, then 0 = the x̂₀ step) for
    ``sampler`` at ``nfe`` model calls; ``loss`` and ``loss_default`` are the mean squared distance
    per coordinate to the reference solution with this grid and with the sampler's default one.
    ``dpm_solver(model, process, shape, grid=tuned.times)`` samples with it."""

    times: Tensor
    nfe: int
    sampler: str
    loss: float
    loss_default: float
    evaluations: int = field(default=0, compare=False)

    def to_dict(self) -> dict:
        """JSON-storable: ``{"sampler", "nfe", "times", "loss", "loss_default"}``."""
        return {
            "sampler": self.sampler,
            "nfe": self.nfe,
            "times": [float(t) for t in self.times.tolist()],
            "loss": self.loss,
            "loss_default": self.loss_default,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TunedGrid:
        """The inverse of ``to_dict``."""
        times = torch.tensor([float(t) for t in data["times"]], dtype=torch.float64)
        if int(data["nfe"]) != times.numel() - 1:
            raise ValueError(
                f"a tuned grid for {data['nfe']} NFE needs {int(data['nfe']) + 1} times, "
                f"got {times.numel()}"
            )
        return cls(times, int(data["nfe"]), str(data["sampler"]), float(data["loss"]),
                   float(data["loss_default"]))  # fmt: skip


def _times(theta, process, s_max: float, s_min: float) -> Tensor:
    """Grid times from free parameters: softmax(θ) splits the log noise range [s_min, s_max] into
    the N gaps between the N + 1 real times and a remainder below the last one."""
    w = torch.softmax(torch.as_tensor(theta, dtype=torch.float64), 0)
    log_sigma = math.log(s_max) - (math.log(s_max) - math.log(s_min)) * torch.cumsum(w, 0)[:-1]
    t = process.t_of_log_snr(-2.0 * log_sigma)
    return torch.cat([torch.tensor([process.t_max], dtype=torch.float64), t, t.new_zeros(1)])


def _theta(times: Tensor, process, s_max: float, s_min: float) -> list[float]:
    """The parameters of a grid (the inverse of ``_times``)."""
    log_sigma = process.sigma_hat(times[:-1]).log()
    edges = torch.cat([log_sigma, torch.tensor([math.log(s_min)], dtype=torch.float64)])
    gaps = (edges[:-1] - edges[1:]).clamp_min(1e-9)
    return gaps.log().tolist()


def tune_grid(
    model,
    process,
    x_val_or_shape,
    nfe: int,
    *,
    n: int = 256,
    reference_steps: int = 200,
    max_evaluations: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> TunedGrid:
    """Fit the ``nfe − 1`` times of ``dpm_solver`` (defaults; + the final x̂₀ call) to ``model``.

    Minimises L(t) = mean ‖Φ_t(z) − Φ_ref(z)‖² / D over n prior draws z (LD3, Chen et al. 2024,
    with the squared distance): Φ_t is ``dpm_solver`` on the grid t = (t_max, t_1, …, t_{N}, 0),
    Φ_ref the probability-flow ODE solved from the same z with ``reference_steps`` 3M steps on the
    log-SNR grid (+ x̂₀).  The N free noise levels σ̂_1 > … > σ̂_N are parametrised by the softmax
    of N + 1 logits (their gaps in log σ̂ within the process's range), started from the default
    recipe ``grids.dpm_recipe`` and searched with scipy's Powell method (derivative-free; the
    sampler runs under ``inference_mode``): deterministic given ``generator``, about
    ``max_evaluations`` (default 40·N) sampler runs of N + 1 calls on n draws.

    Args:
        model: the score model ``model(x, t)``.
        process: its forward process; set ``process.sigma_data`` for a better start.
        x_val_or_shape: validation data (only its event shape is used) or a ``(batch, *event)``
            shape; the draws are n prior samples of that event shape.
        nfe: model calls of the tuned sampler (≥ 3: at least two real steps and the x̂₀ step).
        n: number of prior draws the loss averages over.
        reference_steps: steps of the reference solver.
        generator: the source of the draws (same seed, same grid).
        progress: print the best loss every 25 sampler runs.

    Returns a ``TunedGrid`` (``.times`` for ``grid=``, ``.to_dict()`` for JSON).
    """
    from scipy.optimize import minimize  # imported here: only tuning needs it

    nfe = check_positive_int(nfe, "nfe")
    if nfe < 3:
        raise ValueError(f"nfe must be at least 3 (two steps and the x̂₀ step), got {nfe}")
    n = check_positive_int(n, "n")
    steps = nfe - 1
    event = (
        tuple(x_val_or_shape.shape[1:])
        if isinstance(x_val_or_shape, Tensor)
        else tuple(int(s) for s in x_val_or_shape)[1:]
    )
    if not event:
        raise ValueError("x_val_or_shape must be a (batch, *event) tensor or shape")
    with torch.inference_mode():
        z = initial_state(model, process, (n, *event), generator)
        reference = dpm_solver(
            model, process, z, reference_steps, grid="log_snr", order=3
        ).x.double()
    ends = torch.tensor([process.t_max, process.t_min], dtype=torch.float64)
    s_max, s_min = process.sigma_hat(ends).tolist()
    dim = reference[0].numel()
    evaluations = 0

    best_seen = [math.inf]

    def loss(theta) -> float:
        nonlocal evaluations
        evaluations += 1
        with torch.inference_mode():
            x = dpm_solver(model, process, z, grid=_times(theta, process, s_max, s_min)).x
        value = float((x.double() - reference).square().sum() / (n * dim))
        value = value if math.isfinite(value) else 1e30
        best_seen[0] = min(best_seen[0], value)
        if progress and evaluations % 25 == 0:
            print(f"tune_grid: {evaluations} runs, best loss {best_seen[0]:.4g}", flush=True)
        return value

    start = dpm_recipe(process, steps)
    theta0 = _theta(torch.cat([start, start.new_zeros(1)]), process, s_max, s_min)
    loss_default = loss(theta0)
    budget = 40 * steps if max_evaluations is None else max_evaluations
    budget = check_positive_int(budget, "max_evaluations")
    result = minimize(
        loss, theta0, method="Powell", options={"maxfev": budget, "xtol": 1e-3, "ftol": 1e-4}
    )
    best = loss(result.x)
    if best > loss_default:  # never worse than the start
        best, result.x = loss_default, theta0
    times = _times(result.x, process, s_max, s_min)
    return TunedGrid(times, nfe, "dpm_solver", best, loss_default, evaluations)
