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
from .grids import recipe_range

__all__ = ["DEFAULT_STEPS", "FAMILY", "dpm_solver", "dpm_solver_defaults", "unic"]

DEFAULT_STEPS = 20  # Lu et al.'s 20 steps (21 model calls with the final x̂₀)
# lower_order_final: a step this many times longer in log-SNR than the one before takes order 1
LONG_STEP = 3.0
FAMILY = "dpm"  # grid="auto" is process.default_grid("dpm"): "dpm_recipe" on every process


def default_order(x0_step: bool) -> int:
    """``order=None``: 2 when the grid ends with the x̂₀ step (the default recipe: with UniC this is
    UniPC-2, third order at two model outputs per step), else 3 (Lu et al.'s choice for
    unconditional sampling to t_min)."""
    return 2 if x0_step else 3


def dpm_solver_defaults(process, steps: int, denoise: bool = True) -> tuple[str, int, bool]:
    """(grid, order, corrector) that ``grid="auto"``, ``order=None`` and ``corrector=None`` give on
    ``process`` at ``steps`` intervals: with ``denoise``, ``grids.dpm_recipe`` (in the data's scale
    σ_d = ``process.sigma_data``), order 2 and UniPC's corrector; without, the plain log-SNR grid
    with 3M and no corrector."""
    grid = "dpm_recipe" if denoise and steps >= 2 and recipe_range(process, steps) else "log_snr"
    return grid, default_order(denoise), bool(denoise)


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
    corrector: bool | None = None,
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
    across it made the error grow with the steps; EDM's ρ = 7 grids (≤ 2.1×) and the log-SNR grid
    never trigger it.  And 3M drops to 2M where its second divided difference would span a step
    more than 3 times longer than the current one (the first step of the few-step and recipe grids:
    3M across it measured 2–3× worse than 2M).

    Defaults, in full (``dpm_solver_defaults``; they depend on the resolved times only, so a
    named and an explicit grid get the same rule): with ``denoise``, ``grid="auto"`` is
    ``process.default_grid("dpm")`` = ``grids.dpm_recipe`` (one interval from t_max to a few σ_data,
    log-SNR steps down to an end that shrinks with the budget, in units of the data's standard
    deviation ``process.sigma_data``, then x̂₀), ``order=None`` is 2 and ``corrector=None`` is on
    (with an explicit ``order``, off):
    UniPC-2 on the data's own scale (measured against every sampler and grid of k-diffusion and
    diffusers in benchmarks/results/samplers.md).  Without ``denoise``: the plain
    log-SNR grid to t_min, 3M (Lu et al.'s choice for unconditional sampling), no corrector.
    ``corrector=False, order=2`` is DPM-Solver++(2M), k-diffusion's ``sample_dpmpp_2m`` on the same
    grid ending at 0.

    Args:
        steps: grid intervals N (default 20).  **NFE = steps (+1 with denoise)**.
        grid: ``"auto"``, ``"dpm_recipe"``, ``"few_step"``, ``"log_snr"``, ``"edm_rho"``,
            ``"uniform"``, callable or tensor of times (ending in 0 or not).
        order: 1, 2 (DPM-Solver++(2M)) or 3 (DPM-Solver++(3M)); None: see above.
        corrector: UniPC's corrector UniC (Zhao et al. 2023, "UniPC", B(h) = e^h − 1): each model
            call at t_i also corrects the step t_{i−1} → t_i that produced its input (``unic``),
            raising its order by one at no extra NFE; with ``order=2`` this is UniPC-2 (its
            predictor UniP-2 is DPM-Solver++(2M)).  None: on when the grid ends with x̂₀ and
            ``order`` is None (the default recipe); an explicit order gets the plain solver.
        callback, progress, denoise, return_trajectory: see :mod:`scorematch.samplers.base`; the
            callback's ``denoised`` is the step's data prediction x̂₀.
    """
    if order is not None and order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    t_grid, x0_step = time_grid(
        grid, process, steps, family=FAMILY, default_steps=DEFAULT_STEPS, denoise=denoise
    )
    intervals = len(t_grid) - 1
    if corrector is None:  # part of the default recipe: on when the order is left to it too
        corrector = x0_step and order is None
    order = default_order(x0_step) if order is None else order
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
        x_prev, k = x, 1  # the state the last step started from, and that step's order
        for i in tqdm(range(intervals), disable=not progress, desc="dpm_solver++"):
            m0 = data_prediction(x, i)
            if corrector and i >= 1:  # UniC: this call corrects the step that led here
                x = unic(
                    x_prev, m0, history, lam[i - k : i + 1], k, alphas[i], sigmas[i - 1 : i + 1]
                )
                if trajectory is not None:
                    trajectory[-1] = x
            x_prev, k = x, min(order, i + 1)
            h = lam[i + 1] - lam[i]
            if lower_order_final and not x0_step:
                k = min(k, intervals - i)
            if lower_order_final and k >= 2 and h > LONG_STEP * (lam[i] - lam[i - 1]):
                k = 1  # divided differences of short steps extrapolated across a long one
            if k == 3 and lam[i - 1] - lam[i - 2] > LONG_STEP * h:
                k = 2  # 3M's second difference would span a long step (the recipe's jump)

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
            history = [m0, *history][:order]
            if trajectory is not None:
                trajectory.append(x)
        if x0_step:
            x = data_prediction(x, intervals)
    return Samples(x, counted.nfe, trajectory)


def unic(
    x_prev: Tensor,
    m_new: Tensor,
    history: list[Tensor],
    lam: list[float],
    p: int,
    alpha_new: float,
    sigmas: list[float],
) -> Tensor:
    """UniC-p, the corrector of UniPC (Zhao et al. 2023, Alg. 2 with B(h) = e^h − 1, data
    prediction): redo the step s → t from x_prev = x_s with the data prediction m_t = x̂₀(x_t) that
    the predictor's result x_t has just been given, besides m_s = history[0] and the p − 1 earlier
    ones.  With h = λ_t − λ_s, r_k = (λ_{s_k} − λ_s)/h, D_k = (m_{s_k} − m_s)/r_k, D_t = m_t − m_s:

        x_t = (σ_t/σ_s) x_s + α_t [(1 − e^{−h}) m_s + (1 − e^{−h}) (Σ_k ρ_k D_k + ρ_p D_t)],

    where ρ solves R ρ = g, R_{jk} = r_k^{j−1} (r_p = 1), g_j = j! φ_{j+1}(h)/B(h) with
    φ_{j+1}(h) h^j = the j-th term of e^{−h}'s remainder (UniPC's h_phi_k recursion); ρ = ½ for p = 1.
    ``lam`` = [λ_{s_{p−1}}, …, λ_s, λ_t] (oldest first); ``sigmas`` = [σ_s, σ_t].
    """
    h = lam[-1] - lam[-2]
    hh = -h
    b_h = math.expm1(hh)  # B(h) (bh2); also h·φ₁
    rks = [(lam[-2 - k] - lam[-2]) / h for k in range(1, p)] + [1.0]
    phi, factorial, g = b_h / hh - 1.0, 1.0, []
    for j in range(1, p + 1):
        g.append(phi * factorial / b_h)
        factorial *= j + 1
        phi = phi / hh - 1.0 / factorial
    if p == 1:
        rhos = [0.5]
    else:
        r = torch.tensor(
            [[rk ** (j - 1) for rk in rks] for j in range(1, p + 1)], dtype=torch.float64
        )
        rhos = torch.linalg.solve(r, torch.tensor(g, dtype=torch.float64)).tolist()
    m_s = history[0]
    corr = rhos[-1] * (m_new - m_s)
    for k in range(1, p):
        corr = corr + rhos[k - 1] * (history[k] - m_s) / rks[k - 1]
    return (sigmas[1] / sigmas[0]) * x_prev - alpha_new * b_h * (m_s + corr)
