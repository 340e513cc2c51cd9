"""Stochastic samplers of the reverse-time SDE (Anderson 1982; Song et al. 2021).

A forward process dx = f(t) x dt + g(t) dW with marginals x_t = α_t x₀ + σ_t ε is reversed by

    dx = [f(t) x − ½(1 + η²) g(t)² ∇ₓ log p_t(x)] dt + η g(t) dW̄     (t from t_max to t_min),

which has the forward marginals for every η ≥ 0 (``Process.reverse_drift``; η = 1 is Anderson's
reverse SDE, η = 0 the probability-flow ODE).  Three discretisations live here, all written
against the process interface only, so they run on VE, VP, SubVP, EDM and any new process:

* ``euler_maruyama``  — the Euler–Maruyama step of the reverse SDE, for any η;
* ``reverse_diffusion`` — score-SDE's "reverse diffusion" predictor: reverse one step of the
  discretised forward chain;
* ``ancestral`` — the exact Gaussian posterior q(x_s | x_t, x̂₀) (DDPM / SMLD ancestral sampling,
  and DDIM for ``eta`` < 1).

On a grid t_0 = t_max > t_1 > … > t_N = t_min (N = ``steps``) each sampler makes one model call per
interval and draws no noise on the final interval (score-SDE's "noise removal"); ``denoise`` ends
with Tweedie's x̂₀ at t_min.  NFE = steps (+1 with ``denoise``).  Coefficients are computed in
float64 and applied in x's dtype.  The common contract is in :mod:`.base`.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .._checks import noise_like
from ._common import check_finite, coefficients, report, score_at, time_grid, transition
from .base import CountingModel, Samples, initial_state

__all__ = ["DEFAULT_STEPS", "ancestral", "euler_maruyama", "reverse_diffusion"]

DEFAULT_STEPS = 1000  # score-SDE's discretisation
DISCRETIZATIONS = ("exact", "euler")


# -- one step of each predictor: x at time t -> x at the earlier time s; returns (x_s, score) ------
def euler_maruyama_step(model, process, x, t, s, *, noise=True, generator=None, eta=1.0):
    """x_s = x − [f(t) x − ½(1+η²) g(t)² s(x, t)] Δ + η g(t) √Δ z,  Δ = t − s > 0."""
    dt = t - s
    score = score_at(model, x, t)
    x_mean = x - process.reverse_drift(x, t, score, eta) * dt
    if not noise or eta == 0:
        return x_mean, score
    _, _, _, g = coefficients(process, t)
    return x_mean + eta * g * math.sqrt(dt) * noise_like(x, generator), score


def reverse_diffusion_step(
    model, process, x, t, s, *, noise=True, generator=None, discretization="exact"
):
    """Reverse one step x_t = x_s + F + G z of the forward chain: x_s = x_t − F + G² s(x_t, t) + G z.

    "exact": F = (a − 1) x, G² = σ_t² − a²σ_s² with a = α_t/α_s (SMLD's and DDPM's discretisations);
    "euler": F = f(t) x Δ, G = g(t) √Δ.
    """
    if discretization == "exact":
        a, g2 = transition(process, t, s)
        drift = (a - 1.0) * x
    else:
        _, _, f, g = coefficients(process, t)
        drift, g2 = f * (t - s) * x, g**2 * (t - s)
    score = score_at(model, x, t)
    x_mean = x - drift + g2 * score
    if not noise:
        return x_mean, score
    return x_mean + math.sqrt(g2) * noise_like(x, generator), score


def ancestral_step(model, process, x, t, s, *, noise=True, generator=None, eta=1.0):
    """Sample the Gaussian posterior q(x_s | x_t, x̂₀) of the chain x₀ → x_s → x_t.

    x̂₀ = (x_t + σ_t² s)/α_t and ε̂ = (x_t − α_t x̂₀)/σ_t = −σ_t s; with c = η σ_s G / σ_t,
    x_s = α_s x̂₀ + √(σ_s² − c²) ε̂ + c z.  η = 1: mean α_s x̂₀ + (σ_s² a/σ_t²)(x_t − α_t x̂₀),
    variance σ_s² G²/σ_t² (the exact posterior); η = 0: deterministic DDIM.
    """
    _, sigma_t, _, _ = coefficients(process, t)
    _, sigma_s, _, _ = coefficients(process, s)
    a, g2 = transition(process, t, s)
    score = score_at(model, x, t)
    signal = (x + sigma_t**2 * score) / a  # α_s x̂₀, written without dividing by a tiny α_t
    # √(σ_s² − c²) = σ_s √((1 − η²) G² + a² σ_s²) / σ_t, never negative for 0 ≤ η ≤ 1.
    keep = sigma_s * math.sqrt((1.0 - eta**2) * g2 + a**2 * sigma_s**2) / sigma_t
    x_mean = signal - keep * sigma_t * score
    c = eta * sigma_s * math.sqrt(g2) / sigma_t
    if not noise or c == 0.0:
        return x_mean, score
    return x_mean + c * noise_like(x, generator), score


def check_eta(eta: float, *, at_most_one: bool) -> float:
    eta = float(eta)
    if not (math.isfinite(eta) and eta >= 0 and (eta <= 1 or not at_most_one)):
        allowed = "in [0, 1] (1 = ancestral/DDPM, 0 = DDIM)" if at_most_one else "finite and >= 0"
        raise ValueError(f"eta must be {allowed}, got {eta}")
    return eta


def check_discretization(discretization: str) -> str:
    if discretization not in DISCRETIZATIONS:
        raise ValueError(
            f"unknown discretization {discretization!r}; choose one of {', '.join(DISCRETIZATIONS)}"
        )
    return discretization


def run_predictor(
    step, name, model, process, x_init_or_shape, steps, *, grid, denoise, generator, callback,
    progress, return_trajectory,
) -> Samples:  # fmt: skip
    """The loop the three samplers share: one ``step`` per grid interval, then optional Tweedie."""
    times = time_grid(grid, process, steps, DEFAULT_STEPS)
    counted = CountingModel(model)
    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        trajectory = [x] if return_trajectory else None
        n = len(times) - 1
        for i in tqdm(range(n), disable=not progress, desc=name):
            x_next, score = step(
                counted, process, x, times[i], times[i + 1], noise=i < n - 1, generator=generator
            )
            if callback is not None:
                report(callback, i, times[i], process, x, process.denoise(x, times[i], score))
            x = check_finite(x_next, name, i, times[i + 1])
            if trajectory is not None:
                trajectory.append(x)
        if denoise:
            x = process.denoise(x, times[-1], score_at(counted, x, times[-1]))
    return Samples(x, counted.nfe, trajectory)


# -- public samplers -------------------------------------------------------------------------------
def euler_maruyama(
    model,
    process,
    x_init_or_shape,
    steps: int | None = None,
    *,
    grid="auto",
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
    denoise: bool = True,
    eta: float = 1.0,
    return_trajectory: bool = False,
) -> Samples:
    """Euler–Maruyama on the reverse-time SDE (Anderson 1982; Song et al. 2021, "Score-Based
    Generative Modeling through SDEs", Sec. 4), for the whole family of reverse SDEs with the
    forward marginals.

    With Δ_i = t_i − t_{i+1} > 0 and z ~ N(0, I):

        x_{i+1} = x_i − [f(t_i) x_i − ½(1 + η²) g(t_i)² s(x_i, t_i)] Δ_i + η g(t_i) √Δ_i z,

    no noise on the final step.  ``eta = 1`` (default) is Anderson's reverse SDE, ``eta = 0`` the
    Euler method on the probability-flow ODE; every η ≥ 0 has the same marginals p_t, so every η
    reproduces the data law as the steps shrink, with a step error that depends on η.

    Args:
        model: score model ``model(x, t) -> ∇ₓ log p_t(x)``, t of shape ``(batch,)``.
        process: the forward process (``scorematch.processes``).
        x_init_or_shape: starting state at t_max, or a ``(batch, *event)`` shape to draw from the prior.
        steps: number of grid intervals (default 1000).  **NFE = steps (+1 if denoise).**
        grid: "auto" (the process's ``default_grid`` — uniform in t as score-SDE for VP/VE, ρ = 7
            for EDM), "uniform", "edm_rho", "log_snr", a function or explicit times.
        generator: source of all noise (prior and steps).
        callback, progress, denoise, return_trajectory: see :mod:`scorematch.samplers.base`.
        eta: the noise scale η ≥ 0 of the reverse SDE.
    """
    eta = check_eta(eta, at_most_one=False)

    def step(model, process, x, t, s, *, noise, generator):
        return euler_maruyama_step(
            model, process, x, t, s, noise=noise, generator=generator, eta=eta
        )

    return run_predictor(
        step, "euler_maruyama", model, process, x_init_or_shape, steps, grid=grid,
        denoise=denoise, generator=generator, callback=callback, progress=progress,
        return_trajectory=return_trajectory,
    )  # fmt: skip


def reverse_diffusion(
    model,
    process,
    x_init_or_shape,
    steps: int | None = None,
    *,
    grid="auto",
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
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
    check_discretization(discretization)

    def step(model, process, x, t, s, *, noise, generator):
        return reverse_diffusion_step(
            model, process, x, t, s, noise=noise, generator=generator, discretization=discretization
        )

    return run_predictor(
        step, "reverse_diffusion", model, process, x_init_or_shape, steps, grid=grid,
        denoise=denoise, generator=generator, callback=callback, progress=progress,
        return_trajectory=return_trajectory,
    )  # fmt: skip


def ancestral(
    model,
    process,
    x_init_or_shape,
    steps: int | None = None,
    *,
    grid="auto",
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
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
    eta = check_eta(eta, at_most_one=True)

    def step(model, process, x, t, s, *, noise, generator):
        return ancestral_step(model, process, x, t, s, noise=noise, generator=generator, eta=eta)

    return run_predictor(
        step, "ancestral", model, process, x_init_or_shape, steps, grid=grid, denoise=denoise,
        generator=generator, callback=callback, progress=progress,
        return_trajectory=return_trajectory,
    )  # fmt: skip
