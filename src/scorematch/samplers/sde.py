"""Stochastic samplers of the reverse-time SDE (Anderson 1982; Song et al. 2021).

A forward process dx = f(t) x dt + g(t) dW with marginals x_t = α_t x₀ + σ_t ε is reversed by

    dx = [f(t) x − g(t)² ∇ₓ log p_t(x)] dt + g(t) dW̄        (time running from t_max to t_min).

Three discretisations live here, all written against the process interface only (``marginal``,
``log_alpha_rate``, ``diffusion``), so they run on VE, VP, SubVP, EDM and any new process:

* ``euler_maruyama``  — the Euler–Maruyama step of the reverse SDE;
* ``reverse_diffusion`` — score-SDE's "reverse diffusion" predictor: reverse one step of the
  discretised forward chain;
* ``ancestral`` — the exact Gaussian posterior q(x_s | x_t, x̂₀) (DDPM / SMLD ancestral sampling,
  and DDIM for ``eta`` < 1).

On a grid t_0 = t_max > t_1 > … > t_N = t_min (N = ``steps``) each sampler makes one model call per
interval, draws no noise on the final interval (score-SDE's "noise removal"), and with
``denoise=True`` ends with Tweedie's formula x̂₀ = (x + σ² s(x, t_min)) / α at t_min.
NFE = steps (+1 with ``denoise``).  Coefficients are computed in float64 and applied in x's dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .base import CountingModel, Samples, check_steps, initial_state
from .grids import make_grid

__all__ = ["ancestral", "euler_maruyama", "reverse_diffusion"]


# -- shared by every stochastic sampler (langevin.py uses these too) ------------------------------
def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like x, drawn on the generator's device (same seed, same noise)."""
    where = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)


def _score(model, x: Tensor, t: float) -> Tensor:
    """Call the model at the scalar time t for the whole batch and check the output's shape."""
    s = model(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
    if s.shape != x.shape:
        raise ValueError(
            f"the score model returned shape {tuple(s.shape)} for input shape {tuple(x.shape)}"
        )
    return s


def _coefficients(process, t: float) -> tuple[float, float, float, float]:
    """(α_t, σ_t, f(t), g(t)) as float64 Python numbers."""
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = process.marginal(tt)
    return (
        float(alpha),
        float(sigma),
        float(process.log_alpha_rate(tt)),
        float(process.diffusion(tt)),
    )


def _start(model, process, x_init_or_shape, steps, grid, generator):
    """Counting model, initial state and the grid as a list of float64 times."""
    steps = check_steps(steps)
    counted = CountingModel(model)
    x = initial_state(model, process, x_init_or_shape, generator)
    times = make_grid(grid, process, steps, device=torch.device("cpu"), dtype=torch.float64)
    if times.numel() != steps + 1:
        raise ValueError(
            f"the time grid has {times.numel()} points but steps = {steps} needs {steps + 1}"
        )
    return counted, x, times.tolist()


def _tweedie(model, process, x: Tensor, t: float) -> Tensor:
    """x̂₀ = E[x₀ | x_t = x] = (x + σ_t² ∇log p_t(x)) / α_t (Tweedie's formula, one model call)."""
    alpha, sigma, _, _ = _coefficients(process, t)
    return (x + sigma**2 * _score(model, x, t)) / alpha


def _transition(process, t: float, s: float) -> tuple[float, float]:
    """Forward transition x_t = a x_s + G z between times s < t: a = α_t/α_s, G² = σ_t² − a² σ_s²."""
    alpha_t, sigma_t, _, _ = _coefficients(process, t)
    alpha_s, sigma_s, _, _ = _coefficients(process, s)
    a = alpha_t / alpha_s
    return a, max(sigma_t**2 - a**2 * sigma_s**2, 0.0)


# -- one step of each predictor: x at time t -> x at the earlier time s ----------------------------
def _euler_maruyama_step(model, process, x, t, s, *, noise=True, generator=None):
    """x_s = x − [f(t) x − g(t)² s(x, t)] Δ + g(t) √Δ z, Δ = t − s > 0; returns (x_s, score)."""
    _, _, f, g = _coefficients(process, t)
    dt = t - s
    score = _score(model, x, t)
    x_mean = x - (f * x - g**2 * score) * dt
    if not noise:
        return x_mean, score
    return x_mean + g * math.sqrt(dt) * _noise(x, generator), score


def _reverse_diffusion_step(
    model, process, x, t, s, *, noise=True, generator=None, discretization="exact"
):
    """Reverse one step x_t = x_s + F + G z of the forward chain: x_s = x_t − F + G² s(x_t, t) + G z.

    "exact": F = (a − 1) x, G² = σ_t² − a²σ_s² with a = α_t/α_s (SMLD's and DDPM's discretisations);
    "euler": F = f(t) x Δ, G = g(t) √Δ.  Returns (x_s, score).
    """
    if discretization == "exact":
        a, g2 = _transition(process, t, s)
        drift = (a - 1.0) * x
    else:
        _, _, f, g = _coefficients(process, t)
        drift, g2 = f * (t - s) * x, g**2 * (t - s)
    score = _score(model, x, t)
    x_mean = x - drift + g2 * score
    if not noise:
        return x_mean, score
    return x_mean + math.sqrt(g2) * _noise(x, generator), score


def _ancestral_step(model, process, x, t, s, *, noise=True, generator=None, eta=1.0):
    """Sample the Gaussian posterior q(x_s | x_t, x̂₀) of the chain x₀ → x_s → x_t; returns (x_s, score).

    x̂₀ = (x_t + σ_t² s)/α_t and ε̂ = (x_t − α_t x̂₀)/σ_t = −σ_t s; with c = η σ_s G / σ_t,
    x_s = α_s x̂₀ + √(σ_s² − c²) ε̂ + c z.  η = 1: mean α_s x̂₀ + (σ_s² a/σ_t²)(x_t − α_t x̂₀),
    variance σ_s² G²/σ_t² (the exact posterior); η = 0: deterministic DDIM.
    """
    _, sigma_t, _, _ = _coefficients(process, t)
    _, sigma_s, _, _ = _coefficients(process, s)
    a, g2 = _transition(process, t, s)
    score = _score(model, x, t)
    signal = (x + sigma_t**2 * score) / a  # α_s x̂₀, written without dividing by a tiny α_t
    # √(σ_s² − c²) = σ_s √((1 − η²) G² + a² σ_s²) / σ_t, never negative for 0 ≤ η ≤ 1.
    keep = sigma_s * math.sqrt((1.0 - eta**2) * g2 + a**2 * sigma_s**2) / sigma_t
    x_mean = signal - keep * sigma_t * score
    c = eta * sigma_s * math.sqrt(g2) / sigma_t
    if not noise or c == 0.0:
        return x_mean, score
    return x_mean + c * _noise(x, generator), score


DISCRETIZATIONS = ("exact", "euler")


def _check_eta(eta: float) -> float:
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (1 = ancestral/DDPM, 0 = DDIM), got {eta}")
    return eta


def _check_discretization(discretization: str) -> str:
    if discretization not in DISCRETIZATIONS:
        raise ValueError(
            f"unknown discretization {discretization!r}; choose one of {', '.join(DISCRETIZATIONS)}"
        )
    return discretization


def _run(
    step,
    model,
    process,
    x_init_or_shape,
    steps,
    *,
    grid,
    denoise,
    generator,
    callback,
    progress,
    return_trajectory,
    desc,
) -> Samples:
    """The loop the three samplers share: one ``step`` per grid interval, then optional Tweedie."""
    counted, x, times = _start(model, process, x_init_or_shape, steps, grid, generator)
    trajectory = [x] if return_trajectory else None
    with torch.inference_mode():
        for i in tqdm(range(len(times) - 1), disable=not progress, desc=desc):
            last = i == len(times) - 2
            x, score = step(
                counted, process, x, times[i], times[i + 1], noise=not last, generator=generator
            )
            if trajectory is not None:
                trajectory.append(x)
            if callback is not None:
                callback({"i": i, "t": times[i + 1], "x": x, "score": score})
        if denoise:
            x = _tweedie(counted, process, x, times[-1])
            if trajectory is not None:
                trajectory.append(x)
    return Samples(x, counted.nfe, trajectory)


# -- public samplers -------------------------------------------------------------------------------
def euler_maruyama(
    model,
    process,
    x_init_or_shape,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
    grid="auto",
    denoise: bool = True,
    return_trajectory: bool = False,
) -> Samples:
    """Euler–Maruyama on the reverse-time SDE (Anderson 1982; Song et al. 2021, "Score-Based
    Generative Modeling through SDEs", Sec. 4).

    With Δ_i = t_i − t_{i+1} > 0 and z ~ N(0, I):

        x_{i+1} = x_i − [f(t_i) x_i − g(t_i)² s(x_i, t_i)] Δ_i + g(t_i) √Δ_i z,

    no noise on the final step; ``denoise`` adds Tweedie's x̂₀ = (x + σ² s)/α at t_min.

    Args:
        model: score model ``model(x, t) -> ∇ₓ log p_t(x)``, t of shape ``(batch,)``.
        process: the forward process (``scorematch.processes``).
        x_init_or_shape: starting state at t_max, or a ``(batch, *event)`` shape to draw from the prior.
        steps: number of grid intervals.  **NFE = steps (+1 if denoise).**
        generator: source of all noise (prior and steps).
        callback: called after every step with ``{"i", "t", "x", "score"}``.
        progress: show a progress bar.
        grid: "auto" (default: the process's ``default_grid`` — uniform in t as score-SDE for
            VP/VE, ρ = 7 for EDM), "uniform", "edm_rho", "log_snr", a function or explicit times.
        denoise: final Tweedie step (default True).
        return_trajectory: keep every state (initial, after each step, after denoising).
    """
    return _run(
        _euler_maruyama_step,
        model,
        process,
        x_init_or_shape,
        steps,
        grid=grid,
        denoise=denoise,
        generator=generator,
        callback=callback,
        progress=progress,
        return_trajectory=return_trajectory,
        desc="euler_maruyama",
    )


def reverse_diffusion(
    model,
    process,
    x_init_or_shape,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
    grid="auto",
    denoise: bool = True,
    discretization: str = "exact",
    return_trajectory: bool = False,
) -> Samples:
    """Score-SDE's reverse-diffusion predictor (Song et al. 2021, Sec. 4.2 and App. E).

    Write one step of the forward chain from t_{i+1} to t_i as x_{t_i} = x_{t_{i+1}} + F_i + G_i z and
    reverse it with the score at the current time:

        x_{i+1} = x_i − F_i + G_i² s(x_i, t_i) + G_i z.

    ``discretization="exact"`` (default) uses the exact forward transition, F_i = (a − 1) x_i and
    G_i² = σ_{t_i}² − a² σ_{t_{i+1}}² with a = α_{t_i}/α_{t_{i+1}}: for VE this is SMLD's
    G² = σ_i² − σ_{i−1}², for VP DDPM's F = (√(1−β_i) − 1) x, G² = β_i — score-SDE's own
    discretisations, here for every process.  ``"euler"`` uses F_i = f(t_i) x_i Δ_i and
    G_i = g(t_i) √Δ_i, which makes the step identical to ``euler_maruyama``.

    No noise on the final step; NFE = steps (+1 if denoise).  Other arguments as ``euler_maruyama``.
    """
    _check_discretization(discretization)

    def step(model, process, x, t, s, *, noise, generator):
        return _reverse_diffusion_step(
            model, process, x, t, s, noise=noise, generator=generator, discretization=discretization
        )

    return _run(
        step,
        model,
        process,
        x_init_or_shape,
        steps,
        grid=grid,
        denoise=denoise,
        generator=generator,
        callback=callback,
        progress=progress,
        return_trajectory=return_trajectory,
        desc="reverse_diffusion",
    )


def ancestral(
    model,
    process,
    x_init_or_shape,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
    grid="auto",
    denoise: bool = True,
    eta: float = 1.0,
    return_trajectory: bool = False,
) -> Samples:
    """Ancestral sampling: the exact Gaussian posterior step for a linear-Gaussian process
    (DDPM, Ho et al. 2020; SMLD ancestral sampling, Song et al. 2021 App. F; DDIM's η family,
    Song, Meng & Ermon 2021).

    Between grid times s < t let a = α_t/α_s and G² = σ_t² − a²σ_s² (the forward transition
    x_t = a x_s + G z).  Given x₀, q(x_s | x_t, x₀) is Gaussian with

        mean = α_s x₀ + (σ_s² a / σ_t²)(x_t − α_t x₀),   variance = σ_s² G² / σ_t²,

    and the sampler plugs in x̂₀ = (x_t + σ_t² s(x_t, t)) / α_t (Tweedie).  For VP this is DDPM's
    x_s = (x_t + β s)/√(1−β) + √β̃ z, for VE x_s = x_t + (σ_t² − σ_s²) s + (σ_s/σ_t)√(σ_t² − σ_s²) z.
    ``eta`` scales the noise standard deviation to c = η σ_s G/σ_t and keeps the marginal variance
    σ_s² by using √(σ_s² − c²) ε̂ with ε̂ = −σ_t s (DDIM's generalised step); η = 0 is the
    deterministic DDIM sampler.  Requires 0 ≤ η ≤ 1.

    No noise on the final step; NFE = steps (+1 if denoise).  Other arguments as ``euler_maruyama``.
    """
    eta = _check_eta(eta)

    def step(model, process, x, t, s, *, noise, generator):
        return _ancestral_step(model, process, x, t, s, noise=noise, generator=generator, eta=eta)

    return _run(
        step,
        model,
        process,
        x_init_or_shape,
        steps,
        grid=grid,
        denoise=denoise,
        generator=generator,
        callback=callback,
        progress=progress,
        return_trajectory=return_trajectory,
        desc="ancestral",
    )
