"""Stochastic samplers of the reverse-time SDE (Anderson 1982; Song et al. 2021) and their
Langevin corrector, all run by one predictor–corrector loop.

A forward process dx = f(t) x dt + g(t) dW with marginals x_t = α_t x₀ + σ_t ε is reversed by
dx = [f(t) x − ½(1 + η²) g(t)² ∇ₓ log p_t(x)] dt + η g(t) dW̄ (t from t_max to t_min), which has
the forward marginals for every η ≥ 0 (``Process.reverse_drift``; η = 1 is Anderson's reverse
SDE, η = 0 the probability-flow ODE).  Three discretisations (*predictors*), written against the
process interface only: ``euler_maruyama`` (any η), ``reverse_diffusion`` (score-SDE's: reverse
one step of the discretised forward chain) and ``ancestral`` (the exact Gaussian posterior
q(x_s | x_t, x̂₀): DDPM / SMLD, DDIM for ``eta`` < 1).  The *corrector* is a Langevin step at the
new time (``langevin.langevin_corrector``).  ``pc_loop`` is the one loop, as score-SDE's ``get_pc_sampler``
with its "none" predictor and corrector: the three samplers are predictor-only,
``predictor_corrector`` adds corrector steps (or runs them alone).

One model call per interval of the grid t_0 = t_max > … > t_N = t_min (N = ``steps``);
``denoise`` ends with Tweedie's x̂₀ at t_min (the grid's trailing 0, :func:`~.grids.resolve`),
after noise on every interval; without it the final interval draws no noise (score-SDE's "noise
removal").  Coefficients are computed in float64 and applied in x's dtype.  Contract: :mod:`.base`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import expand_like, noise_like
from ._common import check_finite, coefficients, report, score_at, time_grid, transition
from .base import CountingModel, Samples, initial_state

__all__ = [
    "DEFAULT_STEPS",
    "FAMILY",
    "ancestral",
    "euler_maruyama",
    "pc_loop",
    "predictor_corrector",
    "reverse_diffusion",
]

DEFAULT_STEPS = 1000  # score-SDE's discretisation
FAMILY = "sde"  # grid="auto" is process.default_grid("sde")
DISCRETIZATIONS = ("exact", "euler")
NORMS = ("batch", "sample")

# A predictor moves x from time t to the earlier time s: (x_s, score at (x, t)).
Predictor = Callable[..., tuple[Tensor, Tensor]]


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


PREDICTORS: dict[str, Predictor | None] = {
    "reverse_diffusion": reverse_diffusion_step,
    "euler_maruyama": euler_maruyama_step,
    "ancestral": ancestral_step,
    "none": None,
}


# -- the Langevin corrector --------------------------------------------------------------------
def check_norms(norms: str) -> str:
    if norms not in NORMS:
        raise ValueError(f"unknown norms {norms!r}; choose one of {', '.join(NORMS)}")
    return norms


def check_snr(snr: float) -> float:
    if not (snr > 0 and math.isfinite(snr)):
        raise ValueError(f"snr must be a positive finite number, got {snr}")
    return float(snr)


def corrector_step(
    model, x: Tensor, t_batch: Tensor, snr: float, alpha: float, norms: str, generator
):
    """One Langevin step at time t (see ``langevin_corrector``); returns (x, score at the input)."""
    score = model(x, t_batch)
    if score.shape != x.shape:
        raise ValueError(
            f"the score model returned shape {tuple(score.shape)} for input shape {tuple(x.shape)}"
        )
    z = noise_like(x, generator)
    z_norm = z.reshape(x.shape[0], -1).norm(dim=1)
    s_norm = score.reshape(x.shape[0], -1).norm(dim=1)
    if norms == "batch":
        z_norm, s_norm = z_norm.mean(), s_norm.mean()
    # A sample whose score vanishes has no direction to correct along: step size 0, not inf.
    ratio = torch.where(s_norm > 0, z_norm / s_norm.clamp_min(torch.finfo(x.dtype).tiny), 0.0)
    eps = expand_like(2.0 * alpha * (snr * ratio) ** 2, x)
    return x + eps * score + (2.0 * eps).sqrt() * z, score


# -- the one loop ----------------------------------------------------------------------------------
def pc_loop(
    name: str,
    model,
    process,
    x_init_or_shape,
    times: list[float],
    x0_step: bool,
    *,
    predictor: Predictor | None,
    corrector_steps: int = 0,
    snr: float = 0.16,
    norms: str = "batch",
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
    return_trajectory: bool = False,
) -> Samples:
    """Predictor–corrector sampling on explicit times (score-SDE's ``get_pc_sampler``).

    For each interval t_i → t_{i+1} of ``times``: one ``predictor`` step (None: none), then
    ``corrector_steps`` Langevin steps at t_{i+1} with ε = 2a²(snr‖z‖/‖s‖)², a = α_{t_i}/α_{t_{i+1}}
    (0: none).  ``x0_step``: end with Tweedie's x̂₀ at t_N (one call); without it the predictor
    draws no noise on the last interval.  The callback's ``denoised`` is the predictor's x̂₀ at t_i, or without a
    predictor the first corrector call's at t_{i+1}.
    """
    counted = CountingModel(model)
    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        trajectory = [x] if return_trajectory else None
        n = len(times) - 1
        for i in tqdm(range(n), disable=not progress, desc=name):
            t, s = times[i], times[i + 1]
            x_next, denoised = x, None
            if predictor is not None:
                # noise on every interval; score-SDE's noise removal on the last one only when no
                # x̂₀ step follows (that step removes the noise itself)
                noise = x0_step or i < n - 1
                x_next, score = predictor(
                    counted, process, x, t, s, noise=noise, generator=generator
                )
                denoised = process.denoise(x, t, score) if callback is not None else None
            if corrector_steps:
                a, _ = transition(process, t, s)
                t_batch = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
                for _ in range(corrector_steps):
                    before = x_next
                    x_next, score = corrector_step(
                        counted, x_next, t_batch, snr, a**2, norms, generator
                    )
                    if denoised is None and callback is not None:
                        denoised = process.denoise(before, s, score)
            report(callback, i, t, process, x, denoised)
            x = check_finite(x_next, name, i, s)
            if trajectory is not None:
                trajectory.append(x)
        if x0_step:
            x = process.denoise(x, times[-1], score_at(counted, x, times[-1]))
    return Samples(x, counted.nfe, trajectory)


def _grid(grid, process, steps, denoise) -> tuple[list[float], bool]:
    return time_grid(
        grid, process, steps, family=FAMILY, default_steps=DEFAULT_STEPS, denoise=denoise
    )


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

    then x̂₀ at t_N with ``denoise`` (else no noise on the final step).  ``eta = 1`` (default) is Anderson's reverse SDE, ``eta = 0`` the
    Euler method on the probability-flow ODE; every η ≥ 0 has the same marginals p_t, so every η
    reproduces the data law as the steps shrink, with a step error that depends on η.

    Args:
        model: score model ``model(x, t) -> ∇ₓ log p_t(x)``, t of shape ``(batch,)``.
        process: the forward process (``scorematch.processes``).
        x_init_or_shape: starting state at t_max, or a ``(batch, *event)`` shape to draw from the prior.
        steps: number of grid intervals (default 1000).  **NFE = steps (+1 if denoise).**
        grid: "auto" (``process.default_grid("sde")`` — uniform in t as score-SDE for VP/VE, ρ = 7
            for EDM), "uniform", "edm_rho", "log_snr", a function or explicit times.
        generator: source of all noise (prior and steps).
        callback, progress, denoise, return_trajectory: see :mod:`scorematch.samplers.base`.
        eta: the noise scale η ≥ 0 of the reverse SDE.
    """
    step = partial(euler_maruyama_step, eta=check_eta(eta, at_most_one=False))
    return pc_loop(
        "euler_maruyama",
        model,
        process,
        x_init_or_shape,
        *_grid(grid, process, steps, denoise),
        predictor=step,
        generator=generator,
        callback=callback,
        progress=progress,
        return_trajectory=return_trajectory,
    )


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

    Noise on every step, then x̂₀ with ``denoise`` (else none on the final step); NFE = steps (+1 if
    denoise).  Other arguments as ``euler_maruyama``.
    """
    step = partial(reverse_diffusion_step, discretization=check_discretization(discretization))
    return pc_loop(
        "reverse_diffusion",
        model,
        process,
        x_init_or_shape,
        *_grid(grid, process, steps, denoise),
        predictor=step,
        generator=generator,
        callback=callback,
        progress=progress,
        return_trajectory=return_trajectory,
    )


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

    Noise on every step, then x̂₀ with ``denoise`` (else none on the final step); NFE = steps (+1 if
    denoise).  Other arguments as ``euler_maruyama``.
    """
    step = partial(ancestral_step, eta=check_eta(eta, at_most_one=True))
    return pc_loop(
        "ancestral",
        model,
        process,
        x_init_or_shape,
        *_grid(grid, process, steps, denoise),
        predictor=step,
        generator=generator,
        callback=callback,
        progress=progress,
        return_trajectory=return_trajectory,
    )


def predictor_corrector(
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
    predictor: str = "reverse_diffusion",
    corrector_steps: int = 1,
    snr: float = 0.16,
    norms: str = "batch",
    return_trajectory: bool = False,
) -> Samples:
    """Predictor–corrector sampling (Song et al. 2021, "Score-Based Generative Modeling through
    SDEs", Alg. 1–3).

    For each grid interval t_i → t_{i+1}: one predictor step (``"reverse_diffusion"``,
    ``"euler_maruyama"``, ``"ancestral"`` — the samplers above — or ``"none"``), then
    ``corrector_steps`` Langevin steps at t_{i+1} (``langevin_corrector``):

        ε = 2 a² (snr ‖z‖/‖s‖)²,  x ← x + ε s(x, t_{i+1}) + √(2ε) z,   a = α_{t_i}/α_{t_{i+1}}

    (score-SDE's α_i = 1 − β_i for VP is a² = (α_{t_i}/α_{t_{i+1}})² ≈ 1 − β Δt).

    ``norms``: "batch" (default) takes ‖z‖, ‖s‖ as batch means of per-sample norms, as score-SDE;
    "sample" gives every sample its own ε — fine in high dimension, divergent in low dimension
    (see ``langevin_corrector``).  ``denoise`` adds Tweedie's x̂₀ = (x + σ² s)/α at t_min; without
    it the predictor draws no noise on the final interval.

    **NFE = steps · (corrector_steps + 1) (+1 if denoise)**; steps · corrector_steps (+1) with
    ``predictor="none"`` (whose callback's ``denoised`` is then the corrector's, at t_{i+1}).

    snr: 0.16 is score-SDE's VE/CIFAR-10 value.  On the 2-D mixture tests (exact score, 100 steps,
    one corrector step, batch norms) snr ∈ [0.05, 0.3] stays within sampling error of the target on
    VE, VP and EDM, while snr = 0.5 over-disperses the modes.

    Other arguments as ``euler_maruyama`` (steps default 1000).
    """
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
    if (
        isinstance(corrector_steps, bool)
        or int(corrector_steps) != corrector_steps
        or corrector_steps < 0
    ):
        raise ValueError(f"corrector_steps must be a non-negative integer, got {corrector_steps}")
    if predictor == "none" and corrector_steps == 0:
        raise ValueError("predictor='none' with corrector_steps=0 would not move the samples")
    return pc_loop(
        "predictor_corrector",
        model,
        process,
        x_init_or_shape,
        *_grid(grid, process, steps, denoise),
        predictor=PREDICTORS[predictor],
        corrector_steps=int(corrector_steps),
        snr=check_snr(snr),
        norms=check_norms(norms),
        generator=generator,
        callback=callback,
        progress=progress,
        return_trajectory=return_trajectory,
    )
