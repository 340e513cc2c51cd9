"""Langevin-dynamics samplers: predictor–corrector (Song et al. 2021) and annealed Langevin
dynamics (Song & Ermon 2019).

A Langevin step x ← x + ε ∇log p(x) + √(2ε) z leaves p invariant as ε → 0.  The predictor–corrector
sampler interleaves such steps (the *corrector*) with a reverse-SDE step (the *predictor*); annealed
Langevin dynamics runs only Langevin steps, level by level, from large noise to small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import broadcast_time, expand_like
from .base import CountingModel, Samples, check_steps, initial_state
from .sde import (
    _ancestral_step,
    _coefficients,
    _euler_maruyama_step,
    _noise,
    _reverse_diffusion_step,
    _score,
    _start,
    _transition,
    _tweedie,
)

__all__ = ["annealed_langevin", "langevin_corrector", "predictor_corrector"]

PREDICTORS = {
    "reverse_diffusion": _reverse_diffusion_step,
    "euler_maruyama": _euler_maruyama_step,
    "ancestral": _ancestral_step,
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
    z = _noise(x, generator)
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
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
    predictor: str = "reverse_diffusion",
    corrector_steps: int = 1,
    snr: float = 0.16,
    norms: str = "batch",
    grid="auto",
    denoise: bool = True,
    return_trajectory: bool = False,
) -> Samples:
    """Predictor–corrector sampling (Song et al. 2021, "Score-Based Generative Modeling through
    SDEs", Alg. 1–3).

    For each grid interval t_i → t_{i+1}: one predictor step (``"reverse_diffusion"``,
    ``"euler_maruyama"``, ``"ancestral"`` — see ``scorematch.samplers.sde`` — or ``"none"``), then
    ``corrector_steps`` Langevin steps at t_{i+1} (``langevin_corrector``):

        ε = 2 a² (snr ‖z‖/‖s‖)²,  x ← x + ε s(x, t_{i+1}) + √(2ε) z,   a = α_{t_{i+1}}/α_{t_i}.

    ``norms``: "batch" (default) takes ‖z‖, ‖s‖ as batch means of per-sample norms, as score-SDE;
    "sample" gives every sample its own ε — fine in high dimension, divergent in low dimension
    (see ``langevin_corrector``).  The predictor draws no noise on the final interval;
    ``denoise`` adds Tweedie's x̂₀ = (x + σ² s)/α at t_min.

    **NFE = steps · (corrector_steps + 1) (+1 if denoise)**; steps · corrector_steps (+1) with
    ``predictor="none"``.

    snr: 0.16 is score-SDE's VE/CIFAR-10 value.  Measured on the 2-D mixture tests (exact score,
    100 steps with one corrector step, n = 2000, batch norms) snr ∈ [0.05, 0.3] stays within
    sampling error of the target on VE, VP and EDM, while snr = 0.5 over-disperses the modes
    (Bures excess ≈ 4–5× the sampling noise).

    Other arguments as ``euler_maruyama``.
    """
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
    if int(corrector_steps) != corrector_steps or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be a non-negative integer, got {corrector_steps}")
    if not (snr > 0 and math.isfinite(snr)):
        raise ValueError(f"snr must be a positive finite number, got {snr}")
    _check_norms(norms)
    if predictor == "none" and corrector_steps == 0:
        raise ValueError("predictor='none' with corrector_steps=0 would not move the samples")
    predict = PREDICTORS[predictor]
    counted, x, times = _start(model, process, x_init_or_shape, steps, grid, generator)
    trajectory = [x] if return_trajectory else None
    with torch.inference_mode():
        for i in tqdm(range(len(times) - 1), disable=not progress, desc="predictor_corrector"):
            t, s = times[i], times[i + 1]
            score = None
            if predict is not None:
                x, score = predict(
                    counted, process, x, t, s, noise=i < len(times) - 2, generator=generator
                )
            a, _ = _transition(process, t, s)
            t_batch = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
            for _ in range(int(corrector_steps)):
                x, score = _corrector_step(counted, x, t_batch, float(snr), a**2, norms, generator)
            if trajectory is not None:
                trajectory.append(x)
            if callback is not None:
                callback({"i": i, "t": s, "x": x, "score": score})
        if denoise:
            x = _tweedie(counted, process, x, times[-1])
            if trajectory is not None:
                trajectory.append(x)
    return Samples(x, counted.nfe, trajectory)


def _levels(process, levels) -> Tensor:
    """Scaled noise levels σ̂_1 > … > σ̂_L (float64): the process's own, geometric, or given."""
    own = getattr(process, "sigmas", None)
    if levels is None:
        if own is not None:
            return torch.as_tensor(own, dtype=torch.float64).flatten()
        levels = 10
    if isinstance(levels, int) and not isinstance(levels, bool):
        if levels < 1:
            raise ValueError(
                f"levels must be a positive integer or a list of noise levels, got {levels}"
            )
        ends = torch.tensor([process.t_max, process.t_min], dtype=torch.float64)
        alpha, sigma = process.marginal(ends)
        hi, lo = (sigma / alpha).log().tolist()
        return torch.logspace(hi, lo, levels, base=math.e, dtype=torch.float64)
    if isinstance(levels, (Sequence, Tensor)) and not isinstance(levels, str):
        sig = torch.as_tensor(levels, dtype=torch.float64).flatten()
        if sig.numel() < 1 or not bool((sig > 0).all()) or not bool((sig[1:] < sig[:-1]).all()):
            raise ValueError("levels must be positive noise levels in strictly decreasing order")
        return sig
    raise ValueError(f"levels must be None, an int or a sequence of noise levels, got {levels!r}")


def annealed_langevin(
    model,
    process,
    x_init_or_shape,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback=None,
    progress: bool = False,
    step_size: float | None = None,
    levels: int | Sequence[float] | Tensor | None = None,
    denoise: bool = True,
    return_trajectory: bool = False,
) -> Samples:
    """Annealed Langevin dynamics (Song & Ermon 2019, "Generative Modeling by Estimating Gradients
    of the Data Distribution", Alg. 1), with the final denoising step of Jolicoeur-Martineau et
    al. 2021.

    For each noise level σ_1 > … > σ_L, ``steps`` Langevin steps with α_i = ε σ_i² / σ_L²:

        x ← x + (α_i/2) s(x, σ_i) + √α_i z,

    then (``denoise``) x ← x + σ_L² s(x, σ_L).  **NFE = L · steps (+1 if denoise).**

    Levels: ``process.sigmas`` when the process has them (``NoiseEnsemble``); else ``levels``
    geometric levels (default 10) between the process's scaled noise levels σ̂ = σ/α at t_max and
    t_min; or an explicit decreasing list.  The model is called at t = process.t_of_log_snr(−2 log σ_i)
    (at t = σ_i exactly for a process's own levels, as NCSN models expect).
    Langevin runs on the α = 1 scale y = x/α_t, whose score is α_t s(α_t y, t), so VP and SubVP work
    too; the start x (a state at t_max) is divided by α_{t_max}, and the result is on the data scale.

    step_size ε: default 0.2 σ_L², which is NCSN's ε = 2e-5 at its σ_L = 0.01 (and VE's default
    end).  The ratio ε/σ_L² is what transfers between settings: at the top levels, where
    p ≈ N(0, σ_i²), the chain relaxes at a rate ≈ ε/σ_L² per step, and ε ≥ 2σ_L² overshoots, so it
    raises a ValueError (a fixed 2e-5 would do so on EDM, whose σ_min = 0.002 needs ε < 8e-6).
    Measured on the 2-D mixture tests (exact score, n = 2000): 20 levels × 30–50 steps with
    ε = 0.5 σ_L² reproduce the mixture (mode-weight error 0.02–0.045 against 0.015 for exact
    samples, per-mode Bures distance within sampling noise) on EDM and VE; NCSN's 10 × 100 with
    ε = 0.2 σ_L² leaves the modes over-dispersed (covariance errors 8–17 %), because at the low
    levels the steps are too small to contract the broad directions.  Larger ε/σ_L² trades that
    for the unadjusted-Langevin bias in the mode weights (one level at σ = 1, 4000 samples: weight
    error 0.017 at ε/σ² = 0.3, < 0.001 at 0.1 after 1000 steps).
    """
    steps = check_steps(steps)
    sigmas = _levels(process, levels)
    sigma_last = float(sigmas[-1])
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
    if levels is None and getattr(process, "sigmas", None) is not None:
        times = sigmas.tolist()  # NCSN models are called at their own levels, t = σ_i exactly
    else:
        times = process.t_of_log_snr(-2 * sigmas.log()).tolist()
    counted = CountingModel(model)
    x = initial_state(model, process, x_init_or_shape, generator)
    alpha_start, _, _, _ = _coefficients(process, process.t_max)
    y = x / alpha_start
    trajectory = [y] if return_trajectory else None
    bar = tqdm(total=len(times) * steps, disable=not progress, desc="annealed_langevin")
    with torch.inference_mode():
        for level, (t, sigma) in enumerate(zip(times, sigmas.tolist())):
            alpha, _, _, _ = _coefficients(process, t)
            step = step_size * sigma**2 / sigma_last**2
            for j in range(steps):
                score = alpha * _score(counted, alpha * y, t)  # ∇_y log p(y), y = x_t/α_t
                y = y + 0.5 * step * score + math.sqrt(step) * _noise(y, generator)
                bar.update()
                if callback is not None:
                    callback(
                        {"i": level * steps + j, "level": level, "t": t, "x": y, "score": score}
                    )
            if trajectory is not None:
                trajectory.append(y)
        if denoise:
            t, alpha = times[-1], _coefficients(process, times[-1])[0]
            y = y + sigma_last**2 * alpha * _score(counted, alpha * y, t)
            if trajectory is not None:
                trajectory.append(y)
    bar.close()
    return Samples(y, counted.nfe, trajectory)
