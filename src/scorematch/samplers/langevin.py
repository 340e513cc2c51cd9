"""Langevin-dynamics samplers: predictor–corrector (Song et al. 2021) and annealed Langevin
dynamics (Song & Ermon 2019).

A Langevin step x ← x + ε ∇log p(x) + √(2ε) z leaves p invariant as ε → 0.  The predictor–corrector
sampler interleaves such steps (the *corrector*) with a reverse-SDE step (the *predictor*); annealed
Langevin dynamics runs only Langevin steps, level by level, from large noise to small.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import broadcast_time, check_positive_int, expand_like, noise_like
from ._common import check_finite, coefficients, report, score_at, time_grid, transition
from .base import CountingModel, Samples, initial_state
from .sde import ancestral_step, euler_maruyama_step, reverse_diffusion_step

__all__ = ["annealed_langevin", "langevin_corrector", "predictor_corrector"]

DEFAULT_STEPS = {"predictor_corrector": 1000, "annealed_langevin": 9}  # 9 intervals = 10 levels
PREDICTORS = {
    "reverse_diffusion": reverse_diffusion_step,
    "euler_maruyama": euler_maruyama_step,
    "ancestral": ancestral_step,
    "none": None,
}


NORMS = ("batch", "sample")


def _check_norms(norms: str) -> str:
    if norms not in NORMS:
        raise ValueError(f"unknown norms {norms!r}; choose one of {', '.join(NORMS)}")
    return norms


def _corrector_step(
    model, x: Tensor, t_batch: Tensor, snr: float, alpha: float, norms: str, generator
):
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


def langevin_corrector(
    model,
    x: Tensor,
    t: float | Tensor,
    *,
    snr: float = 0.16,
    alpha: float = 1.0,
    norms: str = "batch",
    generator: torch.Generator | None = None,
) -> Tensor:
    """One Langevin corrector step of Song et al. 2021 (Alg. 2 and 4), one model call.

        ε = 2 α (snr · ‖z‖ / ‖s(x, t)‖)²,   x ← x + ε s(x, t) + √(2ε) z,   z ~ N(0, I),

    so that the signal-to-noise ratio ‖ε s‖ / ‖√(2ε) z‖ equals ``snr``.  ``norms="batch"`` (default,
    as score-SDE) uses the batch means of the per-sample norms (taken over the event), one ε for
    the batch; ``norms="sample"`` gives each sample its own ε.  Per-sample steps only behave in high
    dimension, where ‖z‖ and ‖s‖ concentrate: in low dimension ‖s‖ → 0 near a mode makes ε blow up
    (on the 2-D mixture tests per-sample norms inflate the modes 40–200× beyond sampling noise).
    ``alpha`` is score-SDE's per-step factor α_i = 1 − β_i for VP (1 for VE);
    ``predictor_corrector`` passes (α_t/α_s)², its continuous-time analogue, for every process.
    """
    if snr <= 0 or not math.isfinite(snr):
        raise ValueError(f"snr must be a positive finite number, got {snr}")
    t_batch = broadcast_time(t, x)
    return _corrector_step(
        model, x, t_batch, float(snr), float(alpha), _check_norms(norms), generator
    )[0]


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
    ``"euler_maruyama"``, ``"ancestral"`` — see ``scorematch.samplers.sde`` — or ``"none"``), then
    ``corrector_steps`` Langevin steps at t_{i+1} (``langevin_corrector``):

        ε = 2 a² (snr ‖z‖/‖s‖)²,  x ← x + ε s(x, t_{i+1}) + √(2ε) z,   a = α_{t_i}/α_{t_{i+1}}

    (score-SDE's α_i = 1 − β_i for VP is a² = (α_{t_i}/α_{t_{i+1}})² ≈ 1 − β Δt).

    ``norms``: "batch" (default) takes ‖z‖, ‖s‖ as batch means of per-sample norms, as score-SDE;
    "sample" gives every sample its own ε — fine in high dimension, divergent in low dimension
    (see ``langevin_corrector``).  The predictor draws no noise on the final interval;
    ``denoise`` adds Tweedie's x̂₀ = (x + σ² s)/α at t_min.

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
    if not (snr > 0 and math.isfinite(snr)):
        raise ValueError(f"snr must be a positive finite number, got {snr}")
    _check_norms(norms)
    if predictor == "none" and corrector_steps == 0:
        raise ValueError("predictor='none' with corrector_steps=0 would not move the samples")
    predict = PREDICTORS[predictor]
    times = time_grid(grid, process, steps, DEFAULT_STEPS["predictor_corrector"])
    counted = CountingModel(model)
    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        trajectory = [x] if return_trajectory else None
        n = len(times) - 1
        for i in tqdm(range(n), disable=not progress, desc="predictor_corrector"):
            t, s = times[i], times[i + 1]
            x_next, denoised = x, None
            if predict is not None:
                x_next, score = predict(
                    counted, process, x, t, s, noise=i < n - 1, generator=generator
                )
                denoised = process.denoise(x, t, score) if callback is not None else None
            a, _ = transition(process, t, s)
            t_batch = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
            for j in range(int(corrector_steps)):
                before = x_next
                x_next, score = _corrector_step(
                    counted, x_next, t_batch, float(snr), a**2, norms, generator
                )
                if denoised is None and j == 0 and callback is not None:
                    denoised = process.denoise(before, s, score)
            report(callback, i, t, process, x, denoised)
            x = check_finite(x_next, "predictor_corrector", i, s)
            if trajectory is not None:
                trajectory.append(x)
        if denoise:
            x = process.denoise(x, times[-1], score_at(counted, x, times[-1]))
    return Samples(x, counted.nfe, trajectory)


def annealed_langevin(
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
    langevin_steps: int = 100,
    step_size: float | None = None,
    return_trajectory: bool = False,
) -> Samples:
    """Annealed Langevin dynamics (Song & Ermon 2019, "Generative Modeling by Estimating Gradients
    of the Data Distribution", Alg. 1), with the final denoising step of Jolicoeur-Martineau et
    al. 2021.

    The noise levels are the grid's times t_0 > … > t_N (N = ``steps``, so N + 1 levels) with
    scaled levels σ_i = σ_{t_i}/α_{t_i}.  At each level, ``langevin_steps`` Langevin steps with
    α_i = ε σ_i² / σ_N²:

        y ← y + (α_i/2) ∇_y log p(y; σ_i) + √α_i z,

    then (``denoise``) Tweedie's x̂₀ at the last level.  **NFE = (steps + 1) · langevin_steps
    (+1 if denoise).**

    ``grid="auto"``: a ``NoiseLevels`` process's own levels (the models were trained there; steps =
    L − 1 is implied), else ``"log_snr"``: levels geometric in σ between the process's ends (NCSN's
    layout; default steps 9, i.e. NCSN's 10 levels).  Any grid name, function or explicit times.
    Langevin runs on the α = 1 scale y = x/α_t, whose score is α_t s(α_t y, t), so VP and SubVP work
    too; the start x (a state at t_max) is divided by α_{t_max}.  Without ``denoise`` the result is
    the state at the last level, x = α_N y.

    step_size ε: default 0.2 σ_N², which is NCSN's ε = 2e-5 at its σ_N = 0.01.  The ratio ε/σ_N²
    is what transfers between settings: at the top levels, where p ≈ N(0, σ_i²), the chain relaxes
    at a rate ≈ ε/σ_N² per step, and ε ≥ 2σ_N² overshoots, so it raises a ValueError.  On the 2-D
    mixture tests (exact score): 20 levels × 30–50 steps with ε = 0.5 σ_N² reproduce the mixture on
    EDM and VE; NCSN's 10 × 100 with ε = 0.2 σ_N² leaves the modes over-dispersed (covariance
    errors 8–17 %), because at the low levels the steps are too small to contract the broad
    directions.  Larger ε/σ_N² trades that for the unadjusted-Langevin bias in the mode weights.

    The callback is called once per level i (before its chain) with x = α_i y at t_i and
    ``denoised`` = y + σ_i² ∇_y log p(y; σ_i) from the chain's first model call.  The trajectory
    holds the state y after each level (steps + 1 tensors).
    """
    langevin_steps = check_positive_int(langevin_steps, "langevin_steps")
    auto = isinstance(grid, str) and grid == "auto"
    if auto:
        grid = "levels" if process.default_grid == "levels" else "log_snr"
    times = time_grid(grid, process, steps, DEFAULT_STEPS["annealed_langevin"], min_points=1)
    levels = [coefficients(process, t)[:2] for t in times]  # (α_i, σ_i)
    sigmas = [sigma / alpha for alpha, sigma in levels]
    sigma_last = sigmas[-1]
    if step_size is None:
        step_size = 0.2 * sigma_last**2
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step_size must be a positive finite number, got {step_size}")
    if step_size >= 2 * sigma_last**2:
        raise ValueError(
            f"step_size {step_size:g} is too large for the smallest noise level {sigma_last:g}: "
            f"Langevin overshoots unless step_size < 2σ_L² = {2 * sigma_last**2:g} "
            f"(NCSN uses 0.2σ_L² = {0.2 * sigma_last**2:g})"
        )
    counted = CountingModel(model)
    bar = tqdm(total=len(times) * langevin_steps, disable=not progress, desc="annealed_langevin")
    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        y = x / coefficients(process, process.t_max)[0]
        trajectory = [] if return_trajectory else None
        for level, (t, (alpha, _), sigma) in enumerate(zip(times, levels, sigmas)):
            step = step_size * sigma**2 / sigma_last**2
            for j in range(langevin_steps):
                score = alpha * score_at(counted, alpha * y, t)  # ∇_y log p(y), y = x_t/α_t
                if j == 0 and callback is not None:
                    report(callback, level, t, process, alpha * y, y + sigma**2 * score)
                y = y + 0.5 * step * score + math.sqrt(step) * noise_like(y, generator)
                bar.update()
            check_finite(y, "annealed_langevin", level, t)
            if trajectory is not None:
                trajectory.append(y)
        t, alpha = times[-1], levels[-1][0]
        x = alpha * y
        if denoise:
            x = process.denoise(x, t, score_at(counted, x, t))
    bar.close()
    return Samples(x, counted.nfe, trajectory)
