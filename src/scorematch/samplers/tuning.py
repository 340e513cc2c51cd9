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
from tqdm.auto import tqdm

from .._checks import check_count, check_positive_int
from .base import initial_state
from .dpm_solver import dpm_solver
from .grids import dpm_recipe

__all__ = ["TunedGrid", "tune_grid"]


@dataclass(frozen=True)
class TunedGrid:
    """A grid fitted to a model: ``times`` (float64, t_max > … > t_N, then 0 = the x̂₀ step) for
    ``sampler`` at ``nfe`` model calls; ``loss`` and ``loss_default`` are the mean squared distance
    per coordinate to the reference solution with this grid and with the sampler's default one, on
    the draws it was fitted on; ``holdout_loss`` and ``holdout_loss_default`` the same on other
    draws (None when none were asked for).
    ``dpm_solver(model, process, shape, grid=tuned.times)`` samples with it."""

    times: Tensor
    nfe: int
    sampler: str
    loss: float
    loss_default: float
    evaluations: int = field(default=0, compare=False)
    holdout_loss: float | None = None
    holdout_loss_default: float | None = None

    def to_dict(self) -> dict:
        """JSON-storable: ``{"sampler", "nfe", "times", "loss", "loss_default",
        "holdout_loss", "holdout_loss_default"}``."""
        return {
            "sampler": self.sampler,
            "nfe": self.nfe,
            "times": [float(t) for t in self.times.tolist()],
            "loss": self.loss,
            "loss_default": self.loss_default,
            "holdout_loss": self.holdout_loss,
            "holdout_loss_default": self.holdout_loss_default,
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
        held = [data.get(k) for k in ("holdout_loss", "holdout_loss_default")]
        return cls(times, int(data["nfe"]), str(data["sampler"]), float(data["loss"]),
                   float(data["loss_default"]),
                   holdout_loss=None if held[0] is None else float(held[0]),
                   holdout_loss_default=None if held[1] is None else float(held[1]))  # fmt: skip


def _times(theta, process, s_max: float, s_low: float, t_end: float | None) -> Tensor:
    """Grid times from free parameters: softmax(θ) splits the log noise range [s_low, s_max] into
    gaps.  Free end (``t_end`` None, s_low = the process's σ̂_min): the N gaps between the N + 1
    real times and a remainder below the last one.  Pinned end (s_low = σ̂ at ``t_end``): the N
    gaps down to ``t_end``, the last real time."""
    w = torch.softmax(torch.as_tensor(theta, dtype=torch.float64), 0)
    log_sigma = math.log(s_max) - (math.log(s_max) - math.log(s_low)) * torch.cumsum(w, 0)[:-1]
    t = process.t_of_log_snr(-2.0 * log_sigma)
    end = [] if t_end is None else [t_end]
    return torch.tensor([process.t_max, *t.tolist(), *end, 0.0], dtype=torch.float64)


def _theta(times: Tensor, process, s_max: float, s_low: float, t_end: float | None) -> list[float]:
    """The parameters of a grid (the inverse of ``_times``)."""
    log_sigma = process.sigma_hat(times[:-1]).log()
    if t_end is None:
        log_sigma = torch.cat([log_sigma, torch.tensor([math.log(s_low)], dtype=torch.float64)])
    gaps = (log_sigma[:-1] - log_sigma[1:]).clamp_min(1e-9)
    return gaps.log().tolist()


def tune_grid(
    model,
    process,
    x_val_or_shape,
    nfe: int,
    *,
    n: int = 256,
    holdout: int = 0,
    reference_steps: int = 200,
    max_evaluations: int | None = None,
    fit_end: bool = True,
    trim: float = 0.0,
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
    ``max_evaluations`` (default 40·N) sampler runs of N + 1 calls on n draws.  The result is
    never worse than the start on the fitting draws.

    ``fit_end=False`` keeps the recipe's last level σ̂_N, from which x̂₀ is taken, and fits the
    N − 1 levels above it (N logits).  The squared distance rewards ending early, since
    x̂₀ = E[x₀ | x_t] is the estimate of least squared error from x_t however blurred (each
    mode's covariance Σ shrinks to Σ(Σ + σ̂²I)⁻¹Σ); where the few steps cannot follow the
    reference a fitted end moves up and the samples' covariance error can grow
    (benchmarks/results/samplers.md, 16-D at 5 NFE).

    Args:
        model: the score model ``model(x, t)``.
        process: its forward process; set ``process.sigma_data`` for a better start.
        x_val_or_shape: validation data (only its event shape is used) or a ``(batch, *event)``
            shape; the draws are n prior samples of that event shape.
        nfe: model calls of the tuned sampler (≥ 3: at least two real steps and the x̂₀ step).
        n: number of prior draws the loss averages over.
        holdout: number of other prior draws (drawn after the n) on which the tuned and the
            default grid are also measured (``holdout_loss``, ``holdout_loss_default``); 0: none.
        reference_steps: steps of the reference solver.
        fit_end: fit the last level σ̂_N too (down to the process's σ̂_min); False keeps
            the recipe's.
        trim: the share of draws, the farthest from their reference, left out of the mean.
        generator: the source of the draws (same seed, same grid).
        progress: a progress bar over the sampler runs, with the best loss so far.

    Returns a ``TunedGrid`` (``.times`` for ``grid=``, ``.to_dict()`` for JSON).
    """
    from scipy.optimize import minimize  # imported here: only tuning needs it

    nfe = check_positive_int(nfe, "nfe")
    if nfe < 3:
        raise ValueError(f"nfe must be at least 3 (two steps and the x̂₀ step), got {nfe}")
    n = check_positive_int(n, "n")
    holdout = check_count(holdout, "holdout")
    if not 0.0 <= trim < 1.0:
        raise ValueError(f"trim must be in [0, 1), got {trim!r}")
    steps = nfe - 1
    event = (
        tuple(x_val_or_shape.shape[1:])
        if isinstance(x_val_or_shape, Tensor)
        else tuple(int(s) for s in x_val_or_shape)[1:]
    )
    if not event:
        raise ValueError("x_val_or_shape must be a (batch, *event) tensor or shape")
    budget = 40 * steps if max_evaluations is None else max_evaluations
    budget = check_positive_int(budget, "max_evaluations")

    def reference_of(z: Tensor) -> Tensor:
        with torch.inference_mode():
            return dpm_solver(
                model, process, z, reference_steps, grid="log_snr", order=3
            ).x.double()

    def distance(times: Tensor, z: Tensor, reference: Tensor) -> float:
        with torch.inference_mode():
            x = dpm_solver(model, process, z, grid=times).x
        per_draw = (x.double() - reference).square().flatten(1).mean(1)
        kept = per_draw.sort().values[: max(1, math.ceil((1.0 - trim) * per_draw.numel()))]
        value = float(kept.mean())
        return value if math.isfinite(value) else 1e30

    z = initial_state(model, process, (n, *event), generator)
    reference = reference_of(z)
    start = dpm_recipe(process, steps)
    t_end = None if fit_end else float(start[-1])
    low = process.t_min if fit_end else t_end
    s_max, s_low = process.sigma_hat(
        torch.tensor([process.t_max, low], dtype=torch.float64)
    ).tolist()
    evaluations, best_seen = 0, math.inf
    bar = tqdm(total=budget, desc=f"tuning {nfe} NFE", unit="run", disable=not progress)

    def loss(theta) -> float:
        nonlocal evaluations, best_seen
        evaluations += 1
        value = distance(_times(theta, process, s_max, s_low, t_end), z, reference)
        best_seen = min(best_seen, value)
        if bar.n < bar.total:
            bar.update(1)
        bar.set_postfix(loss=f"{best_seen:.4g}", refresh=False)
        return value

    theta0 = _theta(torch.cat([start, start.new_zeros(1)]), process, s_max, s_low, t_end)
    loss_default = loss(theta0)
    result = minimize(
        loss, theta0, method="Powell", options={"maxfev": budget, "xtol": 1e-3, "ftol": 1e-4}
    )
    best = loss(result.x)
    bar.close()
    if best > loss_default:  # never worse than the start
        best, result.x = loss_default, theta0
    times = _times(result.x, process, s_max, s_low, t_end)
    held = (None, None)
    if holdout:
        z_held = initial_state(model, process, (holdout, *event), generator)
        ref_held = reference_of(z_held)
        default_times = torch.cat([start, start.new_zeros(1)])
        held = (distance(times, z_held, ref_held), distance(default_times, z_held, ref_held))
    return TunedGrid(
        times, nfe, "dpm_solver", best, loss_default, evaluations,
        holdout_loss=held[0], holdout_loss_default=held[1],
    )  # fmt: skip
