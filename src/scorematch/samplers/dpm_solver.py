"""DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models"), data-prediction form, for any process with marginals α_t, σ_t.

In Lu et al.'s half log-SNR λ = log(α/σ) (NOTE: half of ``process.log_snr`` = log(α²/σ²)), the
probability-flow ODE solved for the data prediction x̂₀(x, t) = (x + σ² s(x, t))/α (Tweedie) is

    x_t = (σ_t/σ_s) x_s + σ_t ∫_{λ_s}^{λ_t} e^λ x̂₀(λ) dλ        (exact; variation of constants).

Expanding x̂₀ in λ around λ_s to order k − 1, with h = λ_t − λ_s, gives the order-k step

    x_t = (σ_t/σ_s) x_s + α_t (c₀ x̂₀ + c₁ x̂₀' + c₂ x̂₀''),
    c₀ = 1 − e^{−h},  c₁ = h − c₀,  c₂ = h²/2 − c₁        (c_n = e^{−h} ∫₀^h τⁿ/n! e^τ dτ),

where the λ-derivatives x̂₀', x̂₀'' are divided differences of the data predictions of the previous
steps (multistep: one model call per step).  Order 2 uses Lu et al.'s own coefficient c₀h/2 for
x̂₀' (their Alg. 2, x̂₀ + (1/2r)(x̂₀ − x̂₀_prev) with r = h_prev/h); it equals c₁ to O(h³) and, on the
2-D mixture tests, gives ~1.6× lower error at 10 steps than c₁.  Order 3 uses c₁ and c₂ as above.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._common import check_finite, report, time_grid
from .base import Callback, CountingModel, Samples, initial_state
from .grids import FEW_STEPS, dpm_recipe_choice

__all__ = ["DEFAULT_STEPS", "FAMILY", "FEW_STEPS", "dpm_solver", "dpm_solver_defaults"]

DEFAULT_STEPS = 20  # Lu et al.'s 20 steps (21 model calls with the final x̂₀)
# lower_order_final: a step this many times longer in log-SNR than the one before takes order 1
LONG_STEP = 3.0
FAMILY = "dpm"  # grid="auto" is process.default_grid("dpm"): "dpm_recipe" on every process


def default_order(intervals: int, x0_step: bool = True) -> int:
    """``order=None``: 2 up to ``FEW_STEPS`` intervals followed by the x̂₀ step — the few-step regime,
    where 3M's divided differences would span long steps and unequal neighbours (the few-step grid's
    jump) — else 3 (Lu et al.'s choice for unconditional sampling; it halves 2M's error at 10–20
    steps on the log-SNR grid)."""
    return 2 if x0_step and intervals <= FEW_STEPS else 3


def dpm_solver_defaults(process, steps: int, denoise: bool = True) -> tuple[str, int]:
    """The (grid, order) that ``grid="auto"`` and ``order=None`` give on ``process`` at ``steps``
    intervals: the few-step grid with 2M for 2 ≤ steps ≤ ``FEW_STEPS`` when it fits the process
    and ``denoise`` is on (``grids.dpm_recipe``), else the log-SNR grid (2M up to ``FEW_STEPS``
    steps, 3M above)."""
    return dpm_recipe_choice(process, steps, denoise), default_order(steps, denoise)


def dpm_solver(
    model,
    process,
    x_init_or_shape,
    steps: int | None = None,
    *,
    grid="auto",
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    denoise: bool = True,
    order: int | None = None,
    lower_order_final: bool = True,
    return_trajectory: bool = False,
) -> Samples:
    """DPM-Solver++(kM): multistep exponential integrator in log-SNR time (Lu et al. 2022, Alg. 2).

    Step i goes from t_{i−1} to t_i with h_i = λ_i − λ_{i−1}, λ = log(α/σ):

        x_i = (σ_i/σ_{i−1}) x_{i−1} + α_i (c₀ D₀ + c₁ D₁ + c₂ D₂),   c₀ = 1 − e^{−h}, c₁ = h − c₀,
        c₂ = h²/2 − c₁, D₀ = x̂₀(x_{i−1}, t_{i−1}), and D₁ ≈ dx̂₀/dλ, D₂ ≈ d²x̂₀/dλ² from the
        Newton divided differences of the last ``order`` data predictions (order 1 is DDIM;
        order 2 is Lu et al.'s 2M step, which takes c₀h/2 for c₁).

    The first step is order 1 and the second at most order 2 (no history yet).  With
    ``lower_order_final`` the final step is first order: with ``denoise`` that is the x̂₀ step
    (the order-1 step to σ = 0 is x̂₀ itself, as in k-diffusion's DPM-Solver++ samplers), and every
    real interval keeps its order; without it the last two steps drop order (the last is order 1),
    as DPM-Solver does below 15 steps — at any step count here.  In both cases a step more than
    ``LONG_STEP`` = 3 times longer in log-SNR than the one before also takes order 1: VP's uniform
    grid ends with such a step (6× its predecessor at 10–20 steps), and higher orders extrapolating
    across it made the error grow with the steps; EDM's ρ = 7 grids (≤ 2.1×), the log-SNR and
    few-step grids never trigger it.

    Defaults, in full (``dpm_solver_defaults``): ``grid="auto"`` is ``process.default_grid("dpm")``,
    i.e. ``grids.dpm_recipe``: ``"few_step"`` for 2 ≤ steps ≤ 11 with ``denoise`` (one interval
    from t_max to σ̂ = 10 σ_data, log-SNR steps to 0.1 σ_data, then the final x̂₀ — measured 5× /
    4.5× lower error at 10 NFE than the plain grid on the 2-D / 16-D benchmark mixtures,
    benchmarks/results/samplers.md), else ``"log_snr"`` (uniform in λ from t_max to t_min).
    ``order=None`` depends on the resolved times only (so any grid, named or explicit, gets the same
    rule, ``default_order``): 2 for up to 11 intervals followed by x̂₀ (3M's divided differences
    would span the few-step grid's jump and its unequal neighbours), else 3 (Lu et al.'s choice for
    unconditional sampling; it halves 2M's error at 10–20 steps on the log-SNR grid).

    Args:
        steps: grid intervals N (default 20).  **NFE = steps (+1 with denoise)**.
        grid: ``"auto"``, ``"few_step"``, ``"log_snr"``, ``"edm_rho"``, ``"uniform"``, callable or
            tensor of times.
        order: 1, 2 (DPM-Solver++(2M)) or 3 (DPM-Solver++(3M)); None: see above.
        callback, progress, denoise, return_trajectory: see :mod:`scorematch.samplers.base`; the
            callback's ``denoised`` is the step's data prediction x̂₀.
    """
    if order is not None and order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    t_grid, x0_step = time_grid(
        grid, process, steps, family=FAMILY, default_steps=DEFAULT_STEPS, denoise=denoise
    )
    intervals = len(t_grid) - 1
    order = default_order(intervals, x0_step) if order is None else order
    counted = CountingModel(model)

    with torch.inference_mode():
        x = initial_state(model, process, x_init_or_shape, generator)
        t64 = torch.tensor(t_grid, dtype=torch.float64)
        alphas, sigmas = process.marginal(t64)
        lam = (alphas.log() - sigmas.log()).tolist()  # Lu et al.'s λ: half of process.log_snr
        alphas, sigmas = alphas.tolist(), sigmas.tolist()

        def data_prediction(x: Tensor, i: int) -> Tensor:
            """x̂₀ = (x + σ² s(x, t)) / α at grid time t_i (Tweedie)."""
            tt = torch.full((x.shape[0],), t_grid[i], dtype=x.dtype, device=x.device)
            return process.denoise(x, t_grid[i], counted(x, tt))

        trajectory = [x] if return_trajectory else None
        history: list[Tensor] = []  # data predictions of the previous steps, newest first
        for i in tqdm(range(intervals), disable=not progress, desc="dpm_solver++"):
            m0 = data_prediction(x, i)
            k = min(order, i + 1)
            h = lam[i + 1] - lam[i]
            if lower_order_final and not x0_step:
                k = min(k, intervals - i)
            if lower_order_final and k >= 2 and h > LONG_STEP * (lam[i] - lam[i - 1]):
                k = 1  # divided differences of short steps extrapolated across a long one

            c0 = -math.expm1(-h)
            c1 = h - c0
            c2 = 0.5 * h * h - c1
            update = c0 * m0
            if k >= 2:
                h0 = lam[i] - lam[i - 1]
                f01 = (m0 - history[0]) / h0  # first divided difference in λ
                if k == 2:  # Lu et al.'s 2M: c₀ (h/2) in place of c₁, same order, smaller error
                    update = update + c0 * 0.5 * h * f01
                else:
                    h1 = lam[i - 1] - lam[i - 2]
                    f12 = (history[0] - history[1]) / h1
                    f012 = (f01 - f12) / (h0 + h1)  # second divided difference: x̂₀'' ≈ 2 f012
                    update = update + c1 * (f01 + h0 * f012) + c2 * 2 * f012
            report(callback, i, t_grid[i], process, x, m0)
            x = (sigmas[i + 1] / sigmas[i]) * x + alphas[i + 1] * update
            x = check_finite(x, "dpm_solver", i, t_grid[i + 1])
            history = [m0, *history][: order - 1]
            if trajectory is not None:
                trajectory.append(x)
        if x0_step:
            x = data_prediction(x, intervals)
    return Samples(x, counted.nfe, trajectory)
