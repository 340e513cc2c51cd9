"""Langevin dynamics: the corrector step of predictor–corrector sampling (Song et al. 2021) and
annealed Langevin dynamics (Song & Ermon 2019), Langevin steps only, level by level.

A Langevin step x ← x + ε ∇log p(x) + √(2ε) z leaves p invariant as ε → 0.  The predictor–corrector
sampler, which interleaves such steps with reverse-SDE steps, runs in the one loop of :mod:`.sde`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import broadcast_time, check_positive_int, noise_like
from ._common import check_finite, coefficients, report, score_at, time_grid
from .base import CountingModel, Samples, initial_state
from .sde import check_norms, check_snr, corrector_step

__all__ = ["DEFAULT_STEPS", "FAMILY", "annealed_langevin", "langevin_corrector"]

DEFAULT_STEPS = 9  # 9 intervals = NCSN's 10 levels
FAMILY = "langevin"  # grid="auto" is process.default_grid("langevin")


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
    t_batch = broadcast_time(t, x)
    return corrector_step(
        model, x, t_batch, check_snr(snr), float(alpha), check_norms(norms), generator
    )[0]


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

    ``grid="auto"`` is ``process.default_grid("langevin")``: a ``NoiseLevels`` process's own levels
    (the models were trained there; steps = L − 1 is implied), else ``"log_snr"``: levels geometric
    in σ between the process's ends (NCSN's layout; default steps 9, i.e. NCSN's 10 levels).  Any grid name, function or explicit times.
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
    times, x0_step = time_grid(
        grid,
        process,
        steps,
        family=FAMILY,
        default_steps=DEFAULT_STEPS,
        denoise=denoise,
        min_points=1,
    )
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
        if x0_step:
            x = process.denoise(x, t, score_at(counted, x, t))
    bar.close()
    return Samples(x, counted.nfe, trajectory)
